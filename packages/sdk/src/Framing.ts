/**
 * Blackhole's framing on the host ↔ plugin channel (see docs/protocol.md):
 *
 *   u32 big-endian length | u8 kind | body (length - 1 bytes, UTF-8 JSON)
 *
 * The length counts the kind byte and the body. A frame longer than the
 * configured maximum is rejected as soon as its header arrives: the decoder
 * never allocates what a peer claims.
 */
import * as Data from "effect/Data"

/** The length prefix plus the kind byte. */
export const headerBytes = 5

/** Default hard cap on one frame (kind + body): 4 MiB. */
export const defaultMaxFrameBytes = 4 * 1024 * 1024

/** What a frame carries. */
export const Kind = {
  /** Handshake: `Hello` from the plugin, `Welcome` from the host. */
  Handshake: 0,
  /** An @effect/rpc message from a client to a server (request, ack, interrupt, eof). */
  ToServer: 1,
  /** An @effect/rpc message from a server to a client (exit, chunk, defect). */
  ToClient: 2,
  /** Liveness: a heartbeat and its answer (body is a number). */
  Heartbeat: 3,
  /** Fast path, host → plugin: a mesh call `[id, service, method, payload]`. */
  Call: 4,
  /**
   * Fast path, the answer to a Call: `[id, outcome, value]` (0 success, 1 failure, 2 defect), or
   * `[id, 0]` for a success whose value is `undefined` (JSON would turn it into `null`).
   */
  Reply: 5,
  /** Fast path, host → plugin: the caller was interrupted, `[id]`. */
  Cancel: 6
} as const
/** A frame kind. */
export type Kind = (typeof Kind)[keyof typeof Kind]

/** Why a stream of bytes is not a valid frame sequence. */
export class FrameError extends Data.TaggedError("FrameError")<{
  readonly reason: "oversize" | "unknown-kind" | "undecodable" | "truncated"
  readonly detail: string
}> {
  override get message(): string {
    return `invalid frame (${this.reason}): ${this.detail}`
  }
}

/** One decoded frame. */
export interface Frame {
  readonly kind: Kind
  readonly body: unknown
}

/** The JSON body of a frame (`null` for what JSON cannot say, e.g. `undefined`). */
const bodyOf = (value: unknown): string => JSON.stringify(value) ?? "null"

/** Writes one frame (header, then `length` bytes of `json`) into `out` at `at`; returns where it ends. */
const writeFrame = (out: Buffer, at: number, kind: Kind, json: string, length: number): number => {
  out.writeUInt32BE(length + 1, at)
  out.writeUInt8(kind, at + 4)
  out.write(json, at + headerBytes, length, "utf8")
  return at + headerBytes + length
}

/** Encodes one frame; the value must be JSON-serialisable. */
export const encode = (kind: Kind, value: unknown): Buffer => {
  const json = bodyOf(value)
  const length = Buffer.byteLength(json)
  const frame = Buffer.allocUnsafe(headerBytes + length)
  writeFrame(frame, 0, kind, json, length)
  return frame
}

/**
 * Frames queued to go out together: `take` lays them out in one buffer, so a burst of frames
 * costs one allocation and one write instead of one of each per frame.
 */
export class Batch {
  private bodies: Array<string> = []
  private kinds: Array<Kind> = []
  private lengths: Array<number> = []
  private bytes = 0
  constructor(readonly maxFrameBytes: number = defaultMaxFrameBytes) {}

  /** Frames queued. */
  get size(): number {
    return this.bodies.length
  }

  /** Bytes queued, headers included. */
  get byteLength(): number {
    return this.bytes
  }

  /**
   * Queues one frame; the value must be JSON-serialisable. Answers false, and queues nothing, when
   * the frame would be over the cap: the sender refuses what the receiver would have to reject.
   */
  add(kind: Kind, value: unknown): boolean {
    const json = bodyOf(value)
    const length = Buffer.byteLength(json)
    if (length + 1 > this.maxFrameBytes) return false
    this.bodies.push(json)
    this.kinds.push(kind)
    this.lengths.push(length)
    this.bytes += headerBytes + length
    return true
  }

  /** Every queued frame, in order, in one buffer; the batch is empty after. */
  take(): Buffer {
    const out = Buffer.allocUnsafe(this.bytes)
    let at = 0
    for (let i = 0; i < this.bodies.length; i++) {
      at = writeFrame(out, at, this.kinds[i]!, this.bodies[i]!, this.lengths[i]!)
    }
    this.bodies = []
    this.kinds = []
    this.lengths = []
    this.bytes = 0
    return out
  }
}

const maxKind = Kind.Cancel

/**
 * Incremental decoder: feed it chunks as they arrive, get whole frames out.
 * Throws FrameError on the first invalid frame; the stream is unusable after.
 */
export class Decoder {
  private chunks: Array<Buffer> = []
  /** Where the unread bytes of `chunks[0]` start: frames are read in place, not sliced off. */
  private offset = 0
  private buffered = 0
  constructor(readonly maxFrameBytes: number = defaultMaxFrameBytes) {}

  /** Bytes received but not yet part of a whole frame. */
  get pending(): number {
    return this.buffered
  }

  /** Adds a chunk; returns the frames it completed. */
  push(chunk: Buffer): Array<Frame> {
    const frames: Array<Frame> = []
    this.pushEach(chunk, (kind, body) => {
      frames.push({ kind, body })
    })
    return frames
  }

  /**
   * Adds a chunk and hands each frame it completed to `onFrame`, in order, as it is decoded (the
   * channel's path: no array or frame object per frame). Throws FrameError on the first invalid
   * frame, after the frames before it were handed over.
   */
  pushEach(chunk: Buffer, onFrame: (kind: Kind, body: unknown) => void): void {
    if (chunk.length === 0) return
    this.chunks.push(chunk)
    this.buffered += chunk.length
    while (this.buffered >= headerBytes) {
      const first = this.contiguous(headerBytes)
      const at = this.offset
      const length = first.readUInt32BE(at)
      if (length < 1) throw new FrameError({ reason: "undecodable", detail: "frame length 0 (no kind byte)" })
      if (length > this.maxFrameBytes) {
        throw new FrameError({
          reason: "oversize",
          detail: `frame length ${length} over the cap of ${this.maxFrameBytes}`
        })
      }
      const kind = first.readUInt8(at + 4)
      if (kind > maxKind) throw new FrameError({ reason: "unknown-kind", detail: `kind ${kind}` })
      const size = 4 + length
      if (this.buffered < size) break
      const whole = this.contiguous(size)
      const start = this.offset
      let body: unknown
      try {
        body = JSON.parse(whole.toString("utf8", start + headerBytes, start + size))
      } catch (error) {
        throw new FrameError({
          reason: "undecodable",
          detail: error instanceof Error ? error.message : String(error)
        })
      }
      this.skip(size)
      onFrame(kind as Kind, body)
    }
  }

  /** Fails if the stream ended in the middle of a frame. */
  end(): void {
    if (this.buffered > 0) {
      throw new FrameError({ reason: "truncated", detail: `${this.buffered} bytes of an unfinished frame` })
    }
  }

  /** The first chunk, holding at least `n` unread bytes from `offset` (joining chunks if it must). */
  private contiguous(n: number): Buffer {
    const first = this.chunks[0]!
    if (first.length - this.offset >= n) return first
    const joined = Buffer.concat([first.subarray(this.offset), ...this.chunks.slice(1)])
    this.chunks = [joined]
    this.offset = 0
    return joined
  }

  /** Consumes `n` bytes of the first chunk (which holds them). */
  private skip(n: number): void {
    this.offset += n
    this.buffered -= n
    if (this.offset === this.chunks[0]!.length) {
      this.chunks.shift()
      this.offset = 0
    }
  }
}
