/**
 * The `/blackhole/sync/1.0.0` wire format: one JSON document (UTF-8) per P2P message, decoded with
 * a Schema tagged union, so anything malformed is rejected as a whole before it touches storage.
 *
 * - `Digest`: the sender's versions of the keys in the range (`after`, `upTo`] (null: unbounded),
 *   sorted; the receiver pushes every record of that range the sender lacks or holds older. Writer
 *   node ids are listed once per message in `nodes` and referred to by index.
 * - `Records`: full records (value, or null for a tombstone) with their version and the version
 *   their write replaced.
 * - `Done`: "I processed your digest round `round` and sent you everything it showed you lacked".
 *
 * Builders split their input into messages that stay within a byte budget and a count.
 */
import * as Either from "effect/Either"
import { absurd } from "effect/Function"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type { Version } from "./hlc.js"

const Count = Schema.Number.pipe(
  Schema.filter((n) => (Number.isSafeInteger(n) && n >= 0) || `expected a non-negative integer, got ${n}`)
)

/**
 * An HLC counter: it restarts at 0 every millisecond the clock advances, so a legitimate one stays
 * small. The bound keeps a peer from pushing every clock towards unsafe integers.
 */
export const MAX_COUNTER = 0xffff_ffff

const Counter = Count.pipe(
  Schema.filter((n) => n <= MAX_COUNTER || `a clock counter is at most ${MAX_COUNTER}`)
)

/** A key of the synced namespace. */
const Key = Schema.String.pipe(Schema.minLength(1))

const NodeId = Schema.String.pipe(Schema.minLength(1))

/** A version on the wire: `[millis, counter, node]`. */
export const WireVersion = Schema.Tuple(Count, Counter, NodeId)

/** One record: key, version, the version it replaced, and the value (base64) or null for a tombstone. */
export const WireRecord = Schema.Struct({
  key: Key,
  version: WireVersion,
  prev: Schema.NullOr(WireVersion),
  value: Schema.NullOr(Schema.Uint8ArrayFromBase64)
})

/** A digest entry: `[key, millis, counter, index into nodes]`. */
export const DigestEntry = Schema.Tuple(Key, Count, Counter, Count)

/** The sender's versions for the keys in (`after`, `upTo`]. */
export const Digest = Schema.TaggedStruct("Digest", {
  round: Count,
  after: Schema.NullOr(Schema.String),
  upTo: Schema.NullOr(Schema.String),
  nodes: Schema.Array(NodeId),
  entries: Schema.Array(DigestEntry)
}).pipe(
  Schema.filter((digest) => {
    if (digest.after !== null && digest.upTo !== null && !(digest.after < digest.upTo)) {
      return "after must sort before upTo"
    }
    for (const [key, , , node] of digest.entries) {
      if (node >= digest.nodes.length)
        return `entry ${JSON.stringify(key)} refers to node #${node}, out of range`
      if ((digest.after !== null && key <= digest.after) || (digest.upTo !== null && key > digest.upTo)) {
        return `entry ${JSON.stringify(key)} is outside the digest's range`
      }
    }
    return true
  })
)

/** Records the receiver lacked or held older. */
export const Records = Schema.TaggedStruct("Records", { records: Schema.Array(WireRecord) })

/** The end of the receiver's answer to digest round `round`. */
export const Done = Schema.TaggedStruct("Done", { round: Count })

/** Every message of the protocol. */
export const Message = Schema.Union(Digest, Records, Done)
/** @see Message */
export type Message = typeof Message.Type

/** A record as the engine handles it. */
export interface SyncRecord {
  readonly key: string
  readonly version: Version
  readonly prev: Version | null
  /** Null: a tombstone (the key was deleted). */
  readonly value: Uint8Array | null
}

/** A digest entry as the engine handles it. */
export interface DigestItem {
  readonly key: string
  readonly version: Version
}

/** A decoded digest, node indexes resolved. */
export interface DecodedDigest {
  readonly _tag: "Digest"
  readonly round: number
  readonly after: string | null
  readonly upTo: string | null
  readonly entries: ReadonlyArray<DigestItem>
}

/** A decoded message, in the engine's terms. */
export type Decoded =
  | DecodedDigest
  | { readonly _tag: "Records"; readonly records: ReadonlyArray<SyncRecord> }
  | { readonly _tag: "Done"; readonly round: number }

const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: true })

const fromWire = ([millis, counter, node]: typeof WireVersion.Type): Version => ({ millis, counter, node })
const toWire = (version: Version): typeof WireVersion.Type => [version.millis, version.counter, version.node]

const decodeMessage = Schema.decodeUnknownEither(Message, { onExcessProperty: "error" })
const encodeRecord = Schema.encodeSync(WireRecord)

/** Decodes one message; the Left says what is wrong with it (not UTF-8, not JSON, not the schema). */
export const decode = (bytes: Uint8Array): Either.Either<Decoded, string> => {
  let json: unknown
  try {
    json = JSON.parse(decoder.decode(bytes))
  } catch (error) {
    return Either.left(
      `not a UTF-8 JSON document (${error instanceof Error ? error.message : String(error)})`
    )
  }
  return decodeMessage(json).pipe(
    Either.mapLeft((error) =>
      ParseResult.ArrayFormatter.formatErrorSync(error)
        .slice(0, 3)
        .map((issue) => `${issue.path.length === 0 ? "message" : issue.path.join(".")}: ${issue.message}`)
        .join("; ")
    ),
    Either.map((message): Decoded => {
      switch (message._tag) {
        case "Digest":
          return {
            _tag: "Digest",
            round: message.round,
            after: message.after,
            upTo: message.upTo,
            entries: message.entries.map(([key, millis, counter, node]) => ({
              key,
              // The filter checked every index.
              version: { millis, counter, node: message.nodes[node] as string }
            }))
          }
        case "Records":
          return {
            _tag: "Records",
            records: message.records.map((record) => ({
              key: record.key,
              version: fromWire(record.version),
              prev: record.prev === null ? null : fromWire(record.prev),
              value: record.value
            }))
          }
        case "Done":
          return message
        default:
          return absurd(message)
      }
    })
  )
}

const byteLength = (json: string): number => Buffer.byteLength(json, "utf8")

/** `Done` for `round`. */
export const encodeDone = (round: number): Uint8Array =>
  encoder.encode(JSON.stringify({ _tag: "Done", round }))

/** Bytes of the envelope around the items of a message (the items' commas are counted with them). */
const RECORDS_OVERHEAD = byteLength(JSON.stringify({ _tag: "Records", records: [] }))

/** How a builder bounds each message. */
export interface Limits {
  /** Largest encoded message, in bytes. */
  readonly maxBytes: number
  /** Most items (records or digest entries) in one message. */
  readonly maxItems: number
}

/** What {@link encodeRecords} produced: the messages, and the records too large to send at all. */
export interface Encoded {
  readonly messages: ReadonlyArray<Uint8Array>
  readonly oversize: ReadonlyArray<string>
}

/**
 * Records split into `Records` messages within `limits`. A record whose message alone would exceed
 * `maxBytes` cannot travel on this protocol: it is listed in `oversize` instead.
 */
export const encodeRecords = (records: ReadonlyArray<SyncRecord>, limits: Limits): Encoded => {
  const messages: Array<Uint8Array> = []
  const oversize: Array<string> = []
  let items: Array<string> = []
  let size = RECORDS_OVERHEAD
  const flush = () => {
    if (items.length === 0) return
    messages.push(encoder.encode(`{"_tag":"Records","records":[${items.join(",")}]}`))
    items = []
    size = RECORDS_OVERHEAD
  }
  for (const record of records) {
    const item = JSON.stringify(
      encodeRecord({
        key: record.key,
        version: toWire(record.version),
        prev: record.prev === null ? null : toWire(record.prev),
        value: record.value
      })
    )
    const cost = byteLength(item) + 1
    if (RECORDS_OVERHEAD + cost > limits.maxBytes) {
      oversize.push(record.key)
      continue
    }
    if (items.length >= limits.maxItems || size + cost > limits.maxBytes) flush()
    items.push(item)
    size += cost
  }
  flush()
  return { messages, oversize }
}

/**
 * The next `Digest` message of a round over `keys` (sorted), starting after index `from`: as many
 * entries as fit in `limits`. Returns the message and the index of the first key it did not cover
 * (`keys.length` when it is the last one, whose range is then unbounded above).
 */
export const encodeDigest = (
  round: number,
  keys: ReadonlyArray<string>,
  from: number,
  versionOf: (key: string) => Version | undefined,
  limits: Limits
): { readonly message: Uint8Array; readonly next: number } => {
  const after = from === 0 ? null : (keys[from - 1] as string)
  const nodes: Array<string> = []
  const nodeIndex = new Map<string, number>()
  const entries: Array<string> = []
  // The envelope with both bounds at their largest possible (the last key before and in range).
  let size = byteLength(JSON.stringify({ _tag: "Digest", round, after, upTo: null, nodes: [], entries: [] }))
  let index = from
  for (; index < keys.length; index++) {
    const key = keys[index] as string
    const version = versionOf(key)
    if (version === undefined) continue
    if (entries.length >= limits.maxItems) break
    const known = nodeIndex.get(version.node)
    const nodeCost = known === undefined ? byteLength(JSON.stringify(version.node)) + 1 : 0
    const position = known ?? nodes.length
    const entry = JSON.stringify([key, version.millis, version.counter, position])
    // `upTo` would name this key: its length counts too.
    const cost = byteLength(entry) + 1 + nodeCost + byteLength(JSON.stringify(key))
    if (size + cost > limits.maxBytes) {
      if (entries.length > 0) break
      // A key too long for any message is left out: the receiver then offers its own record of it,
      // which cannot travel either. Such keys are not synced (see the README's limitations).
      continue
    }
    if (known === undefined) {
      nodeIndex.set(version.node, position)
      nodes.push(version.node)
    }
    entries.push(entry)
    size += byteLength(entry) + 1 + nodeCost
  }
  const upTo = index >= keys.length ? null : (keys[index - 1] as string)
  const message = `{"_tag":"Digest","round":${round},"after":${JSON.stringify(after)},"upTo":${JSON.stringify(upTo)},"nodes":${JSON.stringify(nodes)},"entries":[${entries.join(",")}]}`
  return { message: encoder.encode(message), next: index }
}
