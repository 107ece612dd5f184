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
  /** Fast path, plugin → host: its answer `[id, outcome, value]` (0 success, 1 failure, 2 defect). */
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

/** Encodes one frame; the value must be JSON-serialisable. */
export const encode = (kind: Kind, value: unknown): Buffer => {
  const json = JSON.stringify(value) ?? "null"
  const bodyLength = Buffer.byteLength(json)
  const frame = Buffer.allocUnsafe(headerBytes + bodyLength)
  frame.writeUInt32BE(bodyLength + 1, 0)
  frame.writeUInt8(kind, 4)
  frame.write(json, headerBytes, "utf8")
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
    const json = JSON.stringify(value) ?? "null"
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
      const length = this.lengths[i]!
      out.writeUInt32BE(length + 1, at)
      out.writeUInt8(this.kinds[i]!, at + 4)
      out.write(this.bodies[i]!, at + headerBytes, length, "utf8")
      at += headerBytes + length
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
  private buffered = 0
  constructor(readonly maxFrameBytes: number = defaultMaxFrameBytes) {}

  /** Bytes received but not yet part of a whole frame. */
  get pending(): number {
    return this.buffered
  }

  /** Adds a chunk; returns the frames it completed. */
  push(chunk: Buffer): Array<Frame> {
    this.chunks.push(chunk)
    this.buffered += chunk.length
    const frames: Array<Frame> = []
    while (this.buffered >= headerBytes) {
      const head = this.peek(headerBytes)
      const length = head.readUInt32BE(0)
      if (length < 1) throw new FrameError({ reason: "undecodable", detail: "frame length 0 (no kind byte)" })
      if (length > this.maxFrameBytes) {
        throw new FrameError({
          reason: "oversize",
          detail: `frame length ${length} over the cap of ${this.maxFrameBytes}`
        })
      }
      const kind = head.readUInt8(4)
      if (kind > maxKind) throw new FrameError({ reason: "unknown-kind", detail: `kind ${kind}` })
      if (this.buffered < 4 + length) break
      const whole = this.take(4 + length)
      let body: unknown
      try {
        body = JSON.parse(whole.toString("utf8", headerBytes))
      } catch (error) {
        throw new FrameError({
          reason: "undecodable",
          detail: error instanceof Error ? error.message : String(error)
        })
      }
      frames.push({ kind: kind as Kind, body })
    }
    return frames
  }

  /** Fails if the stream ended in the middle of a frame. */
  end(): void {
    if (this.buffered > 0) {
      throw new FrameError({ reason: "truncated", detail: `${this.buffered} bytes of an unfinished frame` })
    }
  }

  private peek(n: number): Buffer {
    const first = this.chunks[0]!
    if (first.length >= n) return first
    this.chunks = [Buffer.concat(this.chunks)]
    return this.chunks[0]!
  }

  private take(n: number): Buffer {
    const first = this.peek(n)
    const out = first.subarray(0, n)
    const rest = first.subarray(n)
    if (rest.length > 0) this.chunks[0] = rest
    else this.chunks.shift()
    this.buffered -= n
    return out
  }
}
