/**
 * What Blackhole puts on a libp2p stream: protocol ids, frames and the envelope inside them.
 *
 * A frame is a 4-byte big-endian length followed by that many bytes of envelope; the envelope is
 * one version byte (1) followed by the payload. A fixed-width prefix keeps the size check a single
 * comparison before anything is buffered.
 *
 * @internal
 */
import type { Stream, StreamMessageEvent } from "@libp2p/interface"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { P2PError } from "./p2pError.js"

/** @internal */
export const PROTOCOL_PREFIX = "/blackhole/"

const PROTOCOL_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/
const PROTOCOL_VERSION = /^[0-9]{1,9}(\.[0-9]{1,9}){0,2}$/

/** `/blackhole/<name>/<version>`, or why the parts do not make one. @internal */
export const protocolId = (name: string, version: string): Either.Either<string, P2PError> => {
  if (!PROTOCOL_NAME.test(name)) {
    return Either.left(
      new P2PError({
        reason: "InvalidProtocol",
        message: `protocol name ${JSON.stringify(name)} must be 1-64 characters of a-z, 0-9, ".", "_", "-", starting with a letter or digit`
      })
    )
  }
  if (!PROTOCOL_VERSION.test(version)) {
    return Either.left(
      new P2PError({
        reason: "InvalidProtocol",
        message: `protocol version ${JSON.stringify(version)} must be numeric: "1", "1.2" or "1.2.3"`
      })
    )
  }
  return Either.right(`${PROTOCOL_PREFIX}${name}/${version}`)
}

/** Checks a full protocol id (only Blackhole protocols carry Blackhole frames). @internal */
export const parseProtocolId = (id: string): Either.Either<string, P2PError> => {
  const parts = id.startsWith(PROTOCOL_PREFIX) ? id.slice(PROTOCOL_PREFIX.length).split("/") : []
  const [name, version] = parts
  if (parts.length !== 2 || name === undefined || version === undefined) {
    return Either.left(
      new P2PError({
        reason: "InvalidProtocol",
        message: `protocol id ${JSON.stringify(id)} is not of the form ${PROTOCOL_PREFIX}<name>/<version>`
      })
    )
  }
  return protocolId(name, version)
}

/** Bytes of the length prefix. @internal */
export const HEADER_BYTES = 4

/** Bytes the envelope adds to a payload (its version byte). @internal */
export const ENVELOPE_OVERHEAD = 1

/** The only envelope version so far. @internal */
export const ENVELOPE_VERSION = 1

/** The decoded envelope. @internal */
export const Envelope = Schema.Struct({
  version: Schema.Literal(ENVELOPE_VERSION),
  payload: Schema.Uint8ArrayFromSelf
})

/** @internal */
export type Envelope = typeof Envelope.Type

/** Envelope bytes (a frame's body) ⇄ {@link Envelope}. @internal */
export const EnvelopeFromBytes = Schema.transformOrFail(Schema.Uint8ArrayFromSelf, Envelope, {
  strict: true,
  decode: (bytes, _, ast) => {
    const version = bytes[0]
    if (version === undefined) {
      return ParseResult.fail(new ParseResult.Type(ast, bytes, "empty envelope: expected a version byte"))
    }
    if (version !== ENVELOPE_VERSION) {
      return ParseResult.fail(
        new ParseResult.Type(
          ast,
          bytes,
          `unsupported envelope version ${version} (expected ${ENVELOPE_VERSION})`
        )
      )
    }
    return ParseResult.succeed({ version, payload: bytes.subarray(ENVELOPE_OVERHEAD) })
  },
  encode: (envelope) => {
    const bytes = new Uint8Array(ENVELOPE_OVERHEAD + envelope.payload.byteLength)
    bytes[0] = envelope.version
    bytes.set(envelope.payload, ENVELOPE_OVERHEAD)
    return ParseResult.succeed(bytes)
  }
})

/** @internal */
export const decodeEnvelope = Schema.decodeEither(EnvelopeFromBytes)

/**
 * A whole frame for `payload`, written in one allocation: the same bytes as the length prefix
 * followed by `EnvelopeFromBytes`'s encoding (a test holds the two together).
 *
 * @internal
 */
export const encodeFrame = (payload: Uint8Array): Uint8Array => {
  const bodyLength = ENVELOPE_OVERHEAD + payload.byteLength
  const frame = new Uint8Array(HEADER_BYTES + bodyLength)
  new DataView(frame.buffer).setUint32(0, bodyLength)
  frame[HEADER_BYTES] = ENVELOPE_VERSION
  frame.set(payload, HEADER_BYTES + ENVELOPE_OVERHEAD)
  return frame
}

/** The body length announced by a 4-byte header. @internal */
export const readLength = (header: Uint8Array): number =>
  new DataView(header.buffer, header.byteOffset, header.byteLength).getUint32(0)

/**
 * Pull-based reading of a libp2p stream with bounded buffering. libp2p 3 pushes `message` events
 * and its async iterator buffers without limit, so this keeps at most `max(highWater, the bytes
 * the caller is waiting for)` plus one chunk, and pauses the stream beyond that: yamux then stops
 * granting the sender window, so a slow consumer slows the sender instead of growing memory.
 *
 * @internal
 */
export class StreamReader {
  private readonly chunks: Array<Uint8Array> = []
  /** Bytes of `chunks[0]` already consumed. */
  private offset = 0
  private buffered = 0
  private wanted = 0
  private ended = false
  private wake: (() => void) | undefined = undefined

  constructor(
    private readonly stream: Stream,
    private readonly highWater: number
  ) {
    stream.addEventListener("message", this.onMessage)
    // `end`: the remote finished writing and everything was delivered; `close` also covers
    // resets and aborts, where `end` may never come.
    stream.addEventListener("end", this.onEnd)
    stream.addEventListener("close", this.onEnd)
  }

  /** Exactly `n` bytes (a fresh array), or `undefined` when the stream ends first. */
  read(n: number): Effect.Effect<Uint8Array | undefined> {
    return Effect.suspend(() => {
      if (this.buffered >= n) {
        return Effect.succeed(this.take(n))
      }
      if (this.ended) {
        return Effect.succeed(undefined)
      }
      this.wanted = n
      this.resumeIfPaused()
      return Effect.zipRight(
        Effect.async<void>((resume) => {
          // Resuming the stream may have delivered what we need synchronously.
          if (this.buffered >= n || this.ended) {
            resume(Effect.void)
            return
          }
          this.wake = () => {
            this.wake = undefined
            resume(Effect.void)
          }
          return Effect.sync(() => {
            this.wake = undefined
          })
        }),
        this.read(n)
      )
    })
  }

  /** Stops listening; whatever is buffered is discarded. */
  dispose(): void {
    this.stream.removeEventListener("message", this.onMessage)
    this.stream.removeEventListener("end", this.onEnd)
    this.stream.removeEventListener("close", this.onEnd)
    this.chunks.length = 0
    this.buffered = 0
    this.ended = true
  }

  private readonly onMessage = (event: StreamMessageEvent): void => {
    const data = event.data instanceof Uint8Array ? event.data : event.data.subarray()
    if (data.byteLength === 0) {
      return
    }
    this.chunks.push(data)
    this.buffered += data.byteLength
    if (this.buffered >= Math.max(this.highWater, this.wanted) && this.stream.readStatus === "readable") {
      this.stream.pause()
    }
    this.wake?.()
  }

  private readonly onEnd = (): void => {
    this.ended = true
    this.wake?.()
  }

  private resumeIfPaused(): void {
    if (this.stream.readStatus === "paused") {
      this.stream.resume()
    }
  }

  private take(n: number): Uint8Array {
    const out = new Uint8Array(n)
    let filled = 0
    while (filled < n) {
      const chunk = this.chunks[0]!
      const count = Math.min(chunk.byteLength - this.offset, n - filled)
      out.set(chunk.subarray(this.offset, this.offset + count), filled)
      filled += count
      this.offset += count
      if (this.offset === chunk.byteLength) {
        this.chunks.shift()
        this.offset = 0
      }
    }
    this.buffered -= n
    this.wanted = 0
    return out
  }
}
