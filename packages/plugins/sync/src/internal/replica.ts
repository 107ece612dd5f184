/**
 * The sync engine of one node: versions of the synced namespace, local writes turned into versions,
 * records from peers applied by last-writer-wins, and one sender fiber per connected peer.
 *
 * Invariants:
 * - The version index (in memory, persisted in the plugin's own storage as `v/<key>`) pairs each
 *   key's version with the SHA-256 of the value written under it. A record is only ever sent with
 *   the value its version was given to: a value found in storage that does not match its version's
 *   hash is a local write not versioned yet, and is versioned first.
 * - Message handlers never wait for the network: what a peer should receive is recorded in its
 *   session (a set of keys, a flag, a round number) and sent by that peer's sender fiber. Two nodes
 *   answering each other's digests therefore cannot block each other through full streams.
 * - Version changes (local or from a peer) happen under one lock, storage first and metadata
 *   second, so a crash between the two is repaired at start as a local write of the same value.
 */
import { createHash } from "node:crypto"
import type * as CoreServices from "@blackhole/sdk/CoreServices"
import type { WriteOp } from "@blackhole/sdk/CoreServices"
import type { LogLevel } from "@blackhole/sdk/PluginLogger"
import type { PluginStorage } from "@blackhole/sdk/PluginStorage"
import type * as ServiceContract from "@blackhole/sdk/ServiceContract"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FiberMap from "effect/FiberMap"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { Config, PeerStatus, RecordInfo, Status } from "../contract.js"
import * as Hlc from "./hlc.js"
import * as Message from "./message.js"

/** What the node holds for a key: its version and the hash of the value (null for a tombstone). */
interface Meta extends Hlc.Held {
  readonly hash: string | null
}

/** What the engine needs from the plugin's context, captured once so its methods need nothing. */
export interface Dependencies {
  readonly nodeId: string
  readonly config: Config
  readonly storage: ServiceContract.Client<typeof CoreServices.Storage>
  readonly p2p: ServiceContract.Client<typeof CoreServices.P2P>
  /** The plugin's own namespace: version metadata. */
  readonly metadata: PluginStorage["Type"]
  readonly publish: (type: string, data: unknown) => Effect.Effect<void>
  /**
   * Starts reporting writes of the synced namespace by others than this plugin to `notice`, for as
   * long as the Scope lasts (the storage hooks). Called before the start-up scan, so nothing slips
   * between the two.
   */
  readonly watch: (notice: (key: string) => void) => Effect.Effect<void, never, Scope.Scope>
  readonly log: (
    level: LogLevel,
    message: string,
    annotations?: Record<string, unknown>
  ) => Effect.Effect<void>
}

/** A peer's counters, kept across its reconnections. */
interface PeerStats {
  connected: boolean
  lastSyncAt: number | null
  rounds: number
  recordsSent: number
  recordsReceived: number
  recordsApplied: number
  conflicts: number
  rejected: number
  lastError: string | null
}

/** What is owed to a connected peer; replaced when it reconnects. */
interface Session {
  readonly peer: string
  /** Keys whose record the peer should receive. */
  readonly pending: Set<string>
  /** Start a digest round with the peer. */
  digestWanted: boolean
  /** The last round this node started with the peer. */
  round: number
  /** The round awaiting the peer's `Done`, if any, and when it started. */
  awaiting: number | null
  awaitingSince: number
  /** The peer's round this node has answered fully (pushes queued): `Done` is owed. */
  doneRound: number | null
  readonly wake: Queue.Queue<void>
}

/** The engine's operations; none has requirements. */
export interface Replica {
  readonly handleMessage: (peer: string, message: Uint8Array) => Effect.Effect<void>
  readonly peerConnected: (peer: string) => Effect.Effect<void>
  readonly peerDisconnected: (peer: string) => Effect.Effect<void>
  /** A write or delete in the synced namespace by someone else than this plugin. */
  readonly noticeWrite: (key: string) => void
  readonly syncNow: (peer?: string) => Effect.Effect<ReadonlyArray<string>>
  readonly status: Effect.Effect<Status>
  readonly inspect: (key: string) => Effect.Effect<RecordInfo | null>
}

const MetaJson = Schema.parseJson(
  Schema.Struct({
    version: Schema.Tuple(Schema.Number, Schema.Number, Schema.String),
    prev: Schema.NullOr(Schema.Tuple(Schema.Number, Schema.Number, Schema.String)),
    deleted: Schema.Boolean,
    hash: Schema.NullOr(Schema.String)
  })
)
const decodeMeta = Schema.decodeEither(MetaJson)
const encodeMeta = Schema.encodeSync(MetaJson)

const wire = (version: Hlc.Version) => [version.millis, version.counter, version.node] as const
const unwire = ([millis, counter, node]: readonly [number, number, string]): Hlc.Version => ({
  millis,
  counter,
  node
})

/** The metadata key of a synced key, in the plugin's own namespace. */
const metaKey = (key: string) => `v/${key}`

/** Storage calls in flight at once when many keys are read or written (each is a mesh call). */
const IO_CONCURRENCY = 16

const hashOf = (value: Uint8Array): string => createHash("sha256").update(value).digest("base64")

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder()

const describe = (error: unknown): string =>
  error instanceof Error
    ? error.message
    : typeof error === "object" && error !== null && "message" in error
      ? String(error.message)
      : String(error)

/** Index of the first element of sorted `keys` greater than `key`. */
const upperBound = (keys: ReadonlyArray<string>, key: string): number => {
  let low = 0
  let high = keys.length
  while (low < high) {
    const middle = (low + high) >>> 1
    if ((keys[middle] as string) <= key) low = middle + 1
    else high = middle
  }
  return low
}

/** Builds the engine: loads the version index, then notices what changed while it was not running. */
export const make = (deps: Dependencies): Effect.Effect<Replica, never, Scope.Scope> =>
  Effect.gen(function* () {
    const { config, nodeId } = deps
    const namespace = config.namespace
    const limits = {
      records: { maxBytes: config.maxMessageBytes, maxItems: config.maxBatchRecords },
      digest: { maxBytes: config.maxMessageBytes, maxItems: config.maxDigestEntries }
    }

    const index = new Map<string, Meta>()
    let sorted: Array<string> | undefined
    const sortedKeys = (): ReadonlyArray<string> => {
      // Default sort: UTF-16 code units, the same order as `<` (and on every node).
      sorted ??= [...index.keys()].sort()
      return sorted
    }
    const setMeta = (key: string, meta: Meta) => {
      if (!index.has(key)) sorted = undefined
      index.set(key, meta)
    }

    let clock: Hlc.Timestamp = Hlc.zero
    const lock = yield* Effect.makeSemaphore(1)
    const dirty = new Set<string>()
    /** Peers to push a dirty key to even when versioning it finds nothing new. */
    const pushAfterReconcile = new Map<string, Set<string>>()
    const reconcileWake = yield* Queue.sliding<void>(1)
    const stats = new Map<string, PeerStats>()
    const sessions = new Map<string, Session>()
    const senders = yield* FiberMap.make<string>()
    let oversize = 0

    const statsOf = (peer: string): PeerStats => {
      let entry = stats.get(peer)
      if (entry === undefined) {
        entry = {
          connected: false,
          lastSyncAt: null,
          rounds: 0,
          recordsSent: 0,
          recordsReceived: 0,
          recordsApplied: 0,
          conflicts: 0,
          rejected: 0,
          lastError: null
        }
        stats.set(peer, entry)
      }
      return entry
    }

    const wake = (session: Session) => Queue.unsafeOffer(session.wake, undefined)

    const pushToAll = (key: string, except?: string) => {
      for (const session of sessions.values()) {
        if (session.peer === except) continue
        session.pending.add(key)
        wake(session)
      }
    }

    const markDirty = (key: string, pushTo?: string) => {
      dirty.add(key)
      if (pushTo !== undefined) {
        let peers = pushAfterReconcile.get(key)
        if (peers === undefined) {
          peers = new Set()
          pushAfterReconcile.set(key, peers)
        }
        peers.add(pushTo)
      }
      Queue.unsafeOffer(reconcileWake, undefined)
    }

    const writeMeta = (key: string, meta: Meta) =>
      deps.metadata
        .store(
          metaKey(key),
          textEncoder.encode(
            encodeMeta({
              version: wire(meta.version),
              prev: meta.prev === null ? null : wire(meta.prev),
              deleted: meta.deleted,
              hash: meta.hash
            })
          )
        )
        .pipe(
          // The index stays right in memory; at the next start the value is versioned again.
          Effect.catchAll((error) =>
            deps.log("warn", `cannot save the version of ${JSON.stringify(key)}: ${describe(error)}`)
          )
        )

    const publish = (type: string, data: unknown) => deps.publish(type, data)

    // ---- local writes ------------------------------------------------------------------------

    /**
     * Versions the local changes among `keys`: those whose stored value differs from what their
     * version says. Under `lock`. Succeeds with how many keys could be read.
     */
    const reconcileKeys = (keys: ReadonlyArray<string>) =>
      Effect.gen(function* () {
        const reads = yield* Effect.forEach(
          keys,
          (key) => {
            // Cleared before reading: a write noticed meanwhile marks it again, and it is read again.
            dirty.delete(key)
            const pushTo = pushAfterReconcile.get(key)
            pushAfterReconcile.delete(key)
            return deps.storage.retrieve({ namespace, key }).pipe(
              Effect.either,
              Effect.map((stored) => ({ key, stored, pushTo }))
            )
          },
          { concurrency: IO_CONCURRENCY }
        )
        const now = yield* Clock.currentTimeMillis
        const changed: Array<readonly [string, Meta]> = []
        let failure: unknown
        let read = 0
        for (const { key, stored, pushTo } of reads) {
          if (Either.isLeft(stored)) {
            failure = stored.left
            for (const peer of pushTo ?? []) markDirty(key, peer)
            dirty.add(key)
            continue
          }
          read++
          const value = stored.right
          const held = index.get(key)
          const hash = value === null ? null : hashOf(value)
          const unchanged =
            held === undefined ? value === null : held.deleted ? value === null : held.hash === hash
          if (unchanged) {
            if (held === undefined) continue
            for (const peer of pushTo ?? []) {
              const session = sessions.get(peer)
              if (session === undefined) continue
              session.pending.add(key)
              wake(session)
            }
            continue
          }
          clock = Hlc.tick(clock, now)
          const meta: Meta = {
            version: { ...clock, node: nodeId },
            prev: held?.version ?? null,
            deleted: value === null,
            hash
          }
          setMeta(key, meta)
          changed.push([key, meta])
          pushToAll(key)
        }
        if (failure !== undefined) {
          yield* deps.log(
            "warn",
            `cannot read ${reads.length - read} changed key(s) of ${JSON.stringify(namespace)}, will retry: ${describe(failure)}`
          )
        }
        yield* Effect.forEach(changed, ([key, meta]) => writeMeta(key, meta), {
          concurrency: IO_CONCURRENCY,
          discard: true
        })
        return read
      })

    /** Versions dirty keys, a bounded number per turn of the lock; false when none could be read. */
    const reconcileSome = lock.withPermits(1)(
      Effect.suspend(() => {
        const keys: Array<string> = []
        for (const key of dirty) {
          keys.push(key)
          if (keys.length >= 256) break
        }
        return Effect.map(reconcileKeys(keys), (read) => read > 0)
      })
    )

    const reconciler = Effect.gen(function* () {
      while (true) {
        yield* Queue.take(reconcileWake)
        while (dirty.size > 0) {
          // Nothing could be read (storage failing): back off rather than spin.
          if (!(yield* reconcileSome)) yield* Effect.sleep("1 second")
        }
      }
    })

    // ---- records from peers ------------------------------------------------------------------

    const conflictSeen = new Map<string, string>()
    const reportConflict = (key: string, from: string, winner: Hlc.Version, loser: Hlc.Version) =>
      Effect.suspend(() => {
        const id = `${Hlc.format(winner)} ${Hlc.format(loser)}`
        // The same pair of writes reaches a node from several peers: report it once.
        if (conflictSeen.get(key) === id) return Effect.void
        if (conflictSeen.size >= 4096) conflictSeen.clear()
        conflictSeen.set(key, id)
        statsOf(from).conflicts++
        return publish("sync.conflict", { key, from, winner: Hlc.format(winner), loser: Hlc.format(loser) })
      })

    interface Staged {
      readonly record: Message.SyncRecord
      readonly held: Meta | undefined
      readonly conflict: boolean
    }

    const writeStaged = (staged: ReadonlyArray<Staged>) =>
      Effect.gen(function* () {
        const op = ({ record }: Staged): WriteOp =>
          record.value === null
            ? { _tag: "Delete", namespace, key: record.key }
            : { _tag: "Put", namespace, key: record.key, value: record.value }
        const batch = yield* deps.storage.batch({ ops: staged.map(op) }).pipe(Effect.either)
        if (Either.isRight(batch)) return staged
        // One vetoed write fails the whole batch: write one by one and keep what succeeds.
        const written: Array<Staged> = []
        for (const item of staged) {
          const result = yield* deps.storage.batch({ ops: [op(item)] }).pipe(Effect.either)
          if (Either.isRight(result)) written.push(item)
          else {
            yield* deps.log(
              "warn",
              `record ${JSON.stringify(item.record.key)} ${Hlc.format(item.record.version)} not applied: ${describe(result.left)}`
            )
          }
        }
        return written
      })

    const applyRecords = (peer: string, records: ReadonlyArray<Message.SyncRecord>) =>
      lock.withPermits(1)(
        Effect.gen(function* () {
          const peerStats = statsOf(peer)
          peerStats.recordsReceived += records.length
          // The newest of each key, should a peer send one twice.
          const newest = new Map<string, Message.SyncRecord>()
          for (const record of records) {
            const seen = newest.get(record.key)
            if (seen === undefined || Hlc.compare(record.version, seen.version) > 0)
              newest.set(record.key, record)
          }
          // Local writes of these keys not versioned yet get their version first (before this
          // node's clock learns the incoming ones): then the rule compares them like any other.
          const unversioned = [...newest.keys()].filter((key) => dirty.has(key))
          if (unversioned.length > 0) yield* reconcileKeys(unversioned)
          const now = yield* Clock.currentTimeMillis
          const staged: Array<Staged> = []
          let ahead = 0
          for (const record of newest.values()) {
            if (record.version.millis > now + config.maxClockDriftMillis) {
              ahead++
              continue
            }
            clock = Hlc.receive(clock, record.version, now)
            const held = index.get(record.key)
            const decision = Hlc.decide(held, {
              version: record.version,
              prev: record.prev,
              deleted: record.value === null
            })
            if (decision._tag === "Same") continue
            if (decision._tag === "Keep") {
              // The peer is behind on this key: send it ours.
              sessions.get(peer)?.pending.add(record.key)
              if (decision.conflict && held !== undefined) {
                yield* reportConflict(record.key, peer, held.version, record.version)
              }
              continue
            }
            staged.push({ record, held, conflict: decision.conflict })
          }
          if (ahead > 0) {
            peerStats.rejected += ahead
            yield* deps.log(
              "warn",
              `${ahead} record(s) from ${peer} are more than ${config.maxClockDriftMillis} ms ahead of this node's clock: not applied until the clocks agree (check both nodes' time)`
            )
          }
          const session = sessions.get(peer)
          if (session !== undefined && session.pending.size > 0) wake(session)
          if (staged.length === 0) return
          const written = yield* writeStaged(staged)
          const metas = written.map(({ record }): readonly [string, Meta] => [
            record.key,
            {
              version: record.version,
              prev: record.prev,
              deleted: record.value === null,
              hash: record.value === null ? null : hashOf(record.value)
            }
          ])
          yield* Effect.forEach(metas, ([key, meta]) => writeMeta(key, meta), {
            concurrency: IO_CONCURRENCY,
            discard: true
          })
          for (const [i, { record, held, conflict }] of written.entries()) {
            const [, meta] = metas[i] as readonly [string, Meta]
            setMeta(record.key, meta)
            peerStats.recordsApplied++
            // Peers that are not connected to the writer learn it from here.
            pushToAll(record.key, peer)
            yield* publish("sync.applied", {
              key: record.key,
              from: peer,
              deleted: meta.deleted,
              version: Hlc.format(record.version)
            })
            if (conflict && held !== undefined) {
              yield* reportConflict(record.key, peer, record.version, held.version)
            }
          }
        })
      )

    // ---- digests -----------------------------------------------------------------------------

    /** Queues for the peer every record in the digest's range that it lacks or holds older. */
    const answerDigest = (session: Session, digest: Message.DecodedDigest) =>
      Effect.sync(() => {
        const theirs = new Map<string, Hlc.Version>()
        let newerThere = false
        for (const { key, version } of digest.entries) {
          theirs.set(key, version)
          const mine = index.get(key)
          if (mine === undefined || Hlc.compare(version, mine.version) > 0) newerThere = true
        }
        const keys = sortedKeys()
        const start = digest.after === null ? 0 : upperBound(keys, digest.after)
        const end = digest.upTo === null ? keys.length : upperBound(keys, digest.upTo)
        for (let i = start; i < end; i++) {
          const key = keys[i] as string
          const version = theirs.get(key)
          const mine = index.get(key)
          if (mine !== undefined && (version === undefined || Hlc.compare(mine.version, version) > 0)) {
            session.pending.add(key)
          }
        }
        if (digest.upTo === null) session.doneRound = digest.round
        // The peer holds something newer: ask for it with a round of our own, unless one is running.
        if (newerThere && session.awaiting === null) session.digestWanted = true
        wake(session)
      })

    // ---- sending -----------------------------------------------------------------------------

    const send = (session: Session, message: Uint8Array) =>
      deps.p2p.send({ protocol: "sync", peer: session.peer, message })

    /** The records of `keys` as they are now; keys whose stored value is not versioned yet are deferred. */
    const readRecords = (session: Session, keys: ReadonlyArray<string>) =>
      Effect.map(
        Effect.forEach(
          keys,
          (key): Effect.Effect<Message.SyncRecord | undefined, unknown> => {
            const meta = index.get(key)
            if (meta === undefined) return Effect.succeed(undefined)
            if (meta.deleted)
              return Effect.succeed({ key, version: meta.version, prev: meta.prev, value: null })
            return Effect.map(deps.storage.retrieve({ namespace, key }), (value) => {
              const current = index.get(key)
              if (
                value === null ||
                current === undefined ||
                current.deleted ||
                hashOf(value) !== current.hash
              ) {
                // Written since it was versioned: version it, then send.
                markDirty(key, session.peer)
                return undefined
              }
              return { key, version: current.version, prev: current.prev, value }
            })
          },
          { concurrency: IO_CONCURRENCY }
        ),
        (records) => records.filter((record) => record !== undefined)
      )

    const sendDigest = (session: Session) =>
      Effect.gen(function* () {
        const round = ++session.round
        session.awaiting = round
        session.awaitingSince = yield* Clock.currentTimeMillis
        // A snapshot: the cached array is replaced, never changed, when keys are added.
        const keys = sortedKeys()
        let from = 0
        do {
          const { message, next } = Message.encodeDigest(
            round,
            keys,
            from,
            (key) => index.get(key)?.version,
            limits.digest
          )
          yield* send(session, message)
          from = next
        } while (from < keys.length)
      })

    const sendPending = (session: Session) =>
      Effect.gen(function* () {
        while (session.pending.size > 0) {
          const keys: Array<string> = []
          for (const key of session.pending) {
            keys.push(key)
            if (keys.length >= limits.records.maxItems) break
          }
          for (const key of keys) session.pending.delete(key)
          const records = yield* readRecords(session, keys)
          const encoded = Message.encodeRecords(records, limits.records)
          if (encoded.oversize.length > 0) {
            oversize += encoded.oversize.length
            yield* deps.log(
              "warn",
              `not synced: ${encoded.oversize.map((key) => JSON.stringify(key)).join(", ")} (a single record exceeds maxMessageBytes ${config.maxMessageBytes})`
            )
          }
          for (const message of encoded.messages) yield* send(session, message)
          statsOf(session.peer).recordsSent += records.length - encoded.oversize.length
        }
      })

    /** Sends what is owed to the peer whenever woken, until the session ends. */
    const sender = (session: Session) =>
      Effect.gen(function* () {
        while (true) {
          yield* Queue.take(session.wake)
          const turn = Effect.gen(function* () {
            if (session.digestWanted) {
              session.digestWanted = false
              yield* sendDigest(session)
            }
            const done = session.doneRound
            yield* sendPending(session)
            if (done !== null) {
              yield* send(session, Message.encodeDone(done))
              if (session.doneRound === done) session.doneRound = null
            }
          })
          yield* turn.pipe(
            Effect.catchAllCause((cause) =>
              Cause.isInterruptedOnly(cause)
                ? Effect.failCause(cause)
                : Effect.gen(function* () {
                    // What was owed is dropped: the next round (on reconnection or anti-entropy) repairs it.
                    session.pending.clear()
                    session.doneRound = null
                    session.awaiting = null
                    const reason = describe(Cause.squash(cause))
                    statsOf(session.peer).lastError = reason
                    yield* deps.log("debug", `sending to ${session.peer} failed: ${reason}`)
                  })
            )
          )
        }
      })

    const sessionOf = (peer: string) =>
      Effect.gen(function* () {
        const existing = sessions.get(peer)
        if (existing !== undefined) return existing
        const session: Session = {
          peer,
          pending: new Set(),
          digestWanted: false,
          round: 0,
          awaiting: null,
          awaitingSince: 0,
          doneRound: null,
          wake: yield* Queue.sliding<void>(1)
        }
        sessions.set(peer, session)
        statsOf(peer).connected = true
        yield* FiberMap.run(senders, peer, sender(session))
        return session
      })

    const startRound = (session: Session) => {
      session.digestWanted = true
      wake(session)
    }

    // ---- start -------------------------------------------------------------------------------

    // The version index, from the plugin's own storage.
    const metaKeys = yield* deps.metadata.list("v/").pipe(Effect.orDie)
    const loaded = yield* Effect.forEach(
      metaKeys,
      (stored) => Effect.map(deps.metadata.retrieve(stored), (bytes) => [stored.slice(2), bytes] as const),
      { concurrency: IO_CONCURRENCY }
    ).pipe(Effect.orDie)
    for (const [key, bytes] of loaded) {
      if (Option.isNone(bytes)) continue
      const decoded = decodeMeta(textDecoder.decode(bytes.value))
      if (Either.isLeft(decoded)) {
        // Treated as unknown: the value is versioned anew below.
        yield* deps.log("warn", `unreadable version of ${JSON.stringify(key)} ignored`)
        continue
      }
      const meta: Meta = {
        version: unwire(decoded.right.version),
        prev: decoded.right.prev === null ? null : unwire(decoded.right.prev),
        deleted: decoded.right.deleted,
        hash: decoded.right.hash
      }
      setMeta(key, meta)
      if (Hlc.compareTimestamps(meta.version, clock) > 0) {
        clock = { millis: meta.version.millis, counter: meta.version.counter }
      }
    }

    yield* deps.watch(markDirty)

    // Writes made while the plugin was not running: every stored key, and every live key no longer
    // stored, is compared with its version by the reconciler.
    const storedKeys = yield* deps.storage.list({ namespace, prefix: "" }).pipe(Effect.orDie)
    for (const key of storedKeys) dirty.add(key)
    for (const [key, meta] of index) if (!meta.deleted) dirty.add(key)
    yield* Effect.forkScoped(reconciler)
    if (dirty.size > 0) Queue.unsafeOffer(reconcileWake, undefined)
    yield* deps.log("info", `syncing namespace ${JSON.stringify(namespace)}`, {
      versions: index.size,
      stored: storedKeys.length
    })

    const replica: Replica = {
      handleMessage: (peer, bytes) =>
        Effect.gen(function* () {
          const decoded = Message.decode(bytes)
          if (Either.isLeft(decoded)) {
            statsOf(peer).rejected++
            yield* deps.log("warn", `dropped an undecodable sync message from ${peer}: ${decoded.left}`)
            return
          }
          const message = decoded.right
          const session = yield* sessionOf(peer)
          switch (message._tag) {
            case "Digest":
              return yield* answerDigest(session, message)
            case "Records":
              return yield* applyRecords(peer, message.records)
            case "Done": {
              if (session.awaiting !== message.round) return
              session.awaiting = null
              const peerStats = statsOf(peer)
              peerStats.rounds++
              peerStats.lastSyncAt = yield* Clock.currentTimeMillis
              yield* publish("sync.peer.synced", { peer, round: message.round })
            }
          }
        }).pipe(
          Effect.catchAllCause((cause) =>
            Cause.isInterruptedOnly(cause)
              ? Effect.void
              : deps.log("warn", `sync message from ${peer} failed: ${describe(Cause.squash(cause))}`)
          )
        ),

      peerConnected: (peer) =>
        Effect.gen(function* () {
          const session = yield* sessionOf(peer)
          startRound(session)
          yield* deps.log("debug", `peer ${peer} connected: starting a round`)
        }),

      peerDisconnected: (peer) =>
        Effect.gen(function* () {
          sessions.delete(peer)
          const peerStats = stats.get(peer)
          if (peerStats !== undefined) peerStats.connected = false
          yield* FiberMap.remove(senders, peer)
        }),

      noticeWrite: (key) => markDirty(key),

      syncNow: (peer) =>
        Effect.sync(() => {
          const started: Array<string> = []
          for (const session of sessions.values()) {
            if (peer !== undefined && session.peer !== peer) continue
            startRound(session)
            started.push(session.peer)
          }
          return started
        }),

      status: Effect.sync(() => {
        let tombstones = 0
        for (const meta of index.values()) if (meta.deleted) tombstones++
        const peers: Array<PeerStatus> = [...stats].map(([peerId, entry]) => ({ peerId, ...entry }))
        return {
          nodeId,
          namespace,
          records: index.size - tombstones,
          tombstones,
          pending: dirty.size,
          peers,
          oversize
        }
      }),

      inspect: (key) =>
        Effect.sync(() => {
          const meta = index.get(key)
          return meta === undefined
            ? null
            : { key, version: meta.version, prev: meta.prev, deleted: meta.deleted }
        })
    }

    // Anti-entropy: a round with every connected peer, unless one started within the interval is
    // still running (a lost `Done` only delays the next round by one interval).
    yield* Effect.gen(function* () {
      while (true) {
        yield* Effect.sleep(config.antiEntropyIntervalMillis)
        const now = yield* Clock.currentTimeMillis
        for (const session of sessions.values()) {
          if (session.awaiting === null || now - session.awaitingSince >= config.antiEntropyIntervalMillis) {
            startRound(session)
          }
        }
      }
    }).pipe(Effect.forkScoped)

    return replica
  })
