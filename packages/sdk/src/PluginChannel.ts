/**
 * One two-way channel between the host and a plugin process: Blackhole's
 * framing over a byte stream (an extra stdio pipe), carrying an
 * `RpcServer.Protocol` and an `RpcClient.Protocol` at once — each side serves
 * one RpcGroup and calls the other. Frames are routed by kind. Frames sent in
 * the same tick go out as one buffer in one write.
 */

import type { Duplex } from "node:stream"
import * as RpcClient from "@effect/rpc/RpcClient"
import * as RpcClientError from "@effect/rpc/RpcClientError"
import type { FromClientEncoded, FromServerEncoded } from "@effect/rpc/RpcMessage"
import * as RpcServer from "@effect/rpc/RpcServer"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Mailbox from "effect/Mailbox"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Framing from "./Framing.js"
import * as FrameShape from "./internal/frameShape.js"

/** What became of a frame handed to `send`. */
export type SendResult = "sent" | "closed" | "too-large"

/** Why a channel closed. */
export type CloseReason =
  | { readonly _tag: "Ended" }
  | { readonly _tag: "Invalid"; readonly error: Framing.FrameError }
  | { readonly _tag: "Error"; readonly message: string }

/** An open channel. */
export interface Channel {
  /** Queues a frame; frames queued in one tick are written together. */
  readonly send: (kind: Framing.Kind, body: unknown) => SendResult
  /** Frames of kind Handshake and Heartbeat; RPC frames go to the protocols, fast-path frames to `onFrame`. */
  readonly control: Queue.Dequeue<Framing.Frame>
  /**
   * Handles fast-path frames (Call, Reply, Cancel) synchronously as they arrive: the per-call
   * path of the mesh skips queues and fibers it does not need.
   */
  readonly onFrame: (kind: Framing.Kind, handler: (body: unknown) => void) => void
  /** Runs `handler` synchronously when the channel closes (at once if it already has). */
  readonly onClose: (handler: (reason: CloseReason) => void) => void
  /** Completes when the channel closes, with why. */
  readonly closed: Deferred.Deferred<CloseReason>
  /** Bytes received but not yet a whole frame (bounded by the frame cap). */
  readonly pendingBytes: () => number
  readonly toServer: Queue.Queue<FromClientEncoded>
  readonly toClient: Queue.Queue<FromServerEncoded>
  /** Ends the channel (idempotent). */
  readonly close: Effect.Effect<void>
  readonly isOpen: () => boolean
}

const closedError = (reason: CloseReason) =>
  new RpcClientError.RpcClientError({
    reason: "Protocol",
    message:
      reason._tag === "Ended"
        ? "the channel closed"
        : reason._tag === "Invalid"
          ? `the channel closed: ${reason.error.message}`
          : `the channel failed: ${reason.message}`
  })

/** Options of a channel. */
export interface ChannelOptions {
  /** Hard cap on one frame; bigger ones close the channel as invalid. Default 4 MiB. */
  readonly maxFrameBytes?: number
}

/** A burst of frames is written in slices of this many frames… */
const flushFrames = 8
/** …or of this many bytes, whichever comes first. */
const flushBytes = 64 * 1024

/** Opens a channel over a duplex byte stream; closing the Scope ends it. */
export const make = (
  stream: Duplex,
  options: ChannelOptions = {}
): Effect.Effect<Channel, never, Scope.Scope> =>
  Effect.gen(function* () {
    const maxFrameBytes = options.maxFrameBytes ?? Framing.defaultMaxFrameBytes
    const decoder = new Framing.Decoder(maxFrameBytes)
    const closed = yield* Deferred.make<CloseReason>()
    const control = yield* Queue.unbounded<Framing.Frame>()
    const toServer = yield* Queue.unbounded<FromClientEncoded>()
    const toClient = yield* Queue.unbounded<FromServerEncoded>()
    let open = true
    let greeted = false
    const fastHandlers = new Map<number, (body: unknown) => void>()
    const closeHandlers: Array<(reason: CloseReason) => void> = []
    let closeReason: CloseReason | undefined

    const finish = (reason: CloseReason) => {
      if (!open) return
      open = false
      stream.off("data", onData)
      stream.destroy()
      // Calls still waiting for an answer fail now, with a typed error, instead of hanging.
      toClient.unsafeOffer({
        _tag: "ClientProtocolError",
        error: closedError(reason)
      } as unknown as FromServerEncoded)
      closeReason = reason
      for (const handler of closeHandlers) handler(reason)
      Deferred.unsafeDone(closed, Effect.succeed(reason))
    }

    // Frames are routed as they are decoded; the first invalid one closes the channel and the
    // rest of the chunk is not looked at.
    const onFrame = (kind: Framing.Kind, body: unknown) => {
      if (!open) return
      const problem = route(kind, body)
      if (problem !== undefined) {
        finish({
          _tag: "Invalid",
          error: new Framing.FrameError({ reason: "undecodable", detail: problem })
        })
      }
    }
    const onData = (chunk: Buffer) => {
      if (!open) return
      try {
        decoder.pushEach(chunk, onFrame)
      } catch (error) {
        finish(
          error instanceof Framing.FrameError
            ? { _tag: "Invalid", error }
            : { _tag: "Error", message: error instanceof Error ? error.message : String(error) }
        )
      }
    }

    /** Delivers one frame; answers why it is invalid instead, if it is. */
    const route = (kind: Framing.Kind, body: unknown): string | undefined => {
      // Nothing but the handshake until a handshake frame has arrived.
      if (!greeted && kind !== Framing.Kind.Handshake) return `kind ${kind} frame before the handshake`
      switch (kind) {
        case Framing.Kind.Handshake:
          greeted = true
          control.unsafeOffer({ kind, body })
          return undefined
        case Framing.Kind.ToServer: {
          const problem = FrameShape.checkToServer(body)
          if (problem === undefined) toServer.unsafeOffer(body as FromClientEncoded)
          return problem
        }
        case Framing.Kind.ToClient: {
          const problem = FrameShape.checkToClient(body)
          if (problem === undefined) toClient.unsafeOffer(body as FromServerEncoded)
          return problem
        }
        case Framing.Kind.Call:
        case Framing.Kind.Reply:
        case Framing.Kind.Cancel: {
          const valid =
            kind === Framing.Kind.Call
              ? FrameShape.isCall(body)
              : kind === Framing.Kind.Reply
                ? FrameShape.isReply(body)
                : FrameShape.isCancel(body)
          if (!valid) return `malformed kind ${kind} frame`
          const handler = fastHandlers.get(kind)
          if (handler === undefined) return undefined
          try {
            handler(body)
            return undefined
          } catch (error) {
            // A handler must never take the process down: the frame that made it throw is invalid.
            return `kind ${kind} frame rejected: ${error instanceof Error ? error.message : String(error)}`
          }
        }
        default:
          control.unsafeOffer({ kind, body })
          return undefined
      }
    }
    stream.on("data", onData)
    stream.once("end", () => {
      try {
        decoder.end()
        finish({ _tag: "Ended" })
      } catch (error) {
        finish({ _tag: "Invalid", error: error as Framing.FrameError })
      }
    })
    stream.once("close", () => finish({ _tag: "Ended" }))
    stream.on("error", (error) => finish({ _tag: "Error", message: error.message }))

    // Frames sent in one tick leave together, as one buffer in one write, in slices: a burst goes out
    // every `flushFrames` frames or `flushBytes` bytes, so the peer already works on the first slice
    // while this side still produces the rest (the two processes overlap instead of taking turns).
    const batch = new Framing.Batch(maxFrameBytes)
    let flushing = false
    const flush = () => {
      flushing = false
      if (open && batch.size > 0) stream.write(batch.take())
    }
    const send = (kind: Framing.Kind, body: unknown): SendResult => {
      if (!open) return "closed"
      if (!batch.add(kind, body)) return "too-large"
      if (batch.size >= flushFrames || batch.byteLength >= flushBytes) stream.write(batch.take())
      else if (!flushing) {
        flushing = true
        process.nextTick(flush)
      }
      return "sent"
    }

    const close = Effect.sync(() => finish({ _tag: "Ended" }))
    yield* Effect.addFinalizer(() => close)
    return {
      send,
      control,
      closed,
      pendingBytes: () => decoder.pending,
      toServer,
      toClient,
      close,
      isOpen: () => open,
      onFrame: (kind, handler) => {
        fastHandlers.set(kind, handler)
      },
      onClose: (handler) => {
        if (closeReason === undefined) closeHandlers.push(handler)
        else handler(closeReason)
      }
    }
  })

/** Drains a queue into a protocol's writer, forever (in the current Scope); waits when it is empty. */
const pump = <A>(queue: Queue.Dequeue<A>, write: (message: A) => Effect.Effect<void>) =>
  Queue.takeBetween(queue, 1, Number.MAX_SAFE_INTEGER).pipe(
    Effect.flatMap((messages) => Effect.forEach(messages, write, { discard: true })),
    Effect.forever,
    Effect.interruptible,
    Effect.forkScoped
  )

/** The server half: serves requests that arrive on the channel. */
export const serverProtocol = (
  channel: Channel
): Effect.Effect<RpcServer.Protocol["Type"], never, Scope.Scope> =>
  RpcServer.Protocol.make((writeRequest) =>
    Effect.gen(function* () {
      yield* pump(channel.toServer, (message) => writeRequest(0, message))
      return {
        disconnects: yield* Mailbox.make<number>(),
        send: (_clientId, response) =>
          Effect.sync(() => {
            if (channel.send(Framing.Kind.ToClient, response) !== "too-large") return
            // Too large to send: the caller gets a defect for this one request instead.
            if (response._tag === "Exit" || response._tag === "Chunk") {
              channel.send(Framing.Kind.ToClient, {
                _tag: "Exit",
                requestId: response.requestId,
                exit: {
                  _tag: "Failure",
                  cause: { _tag: "Die", defect: "response larger than the channel's frame cap" }
                }
              })
            }
          }),
        end: () => Effect.void,
        clientIds: Effect.succeed(new Set([0])),
        initialMessage: Effect.succeedNone,
        supportsAck: true,
        supportsTransferables: false,
        // Span propagation is off: tracing is off on the hot path unless enabled.
        supportsSpanPropagation: false
      }
    })
  )

/** The client half: sends requests on the channel and receives their answers. */
export const clientProtocol = (
  channel: Channel
): Effect.Effect<RpcClient.Protocol["Type"], never, Scope.Scope> =>
  RpcClient.Protocol.make((writeResponse) =>
    Effect.gen(function* () {
      yield* pump(channel.toClient, writeResponse)
      return {
        send: (request) =>
          Effect.suspend(() => {
            const sent = channel.send(Framing.Kind.ToServer, request)
            return sent === "sent"
              ? Effect.void
              : Effect.fail(
                  new RpcClientError.RpcClientError({
                    reason: "Protocol",
                    message:
                      sent === "closed"
                        ? "the channel is closed"
                        : "request larger than the channel's frame cap"
                  })
                )
          }),
        supportsAck: true,
        supportsTransferables: false
      }
    })
  )
