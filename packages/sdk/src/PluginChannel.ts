/**
 * One two-way channel between the host and a plugin process: Blackhole's
 * framing over a byte stream (an extra stdio pipe), carrying an
 * `RpcServer.Protocol` and an `RpcClient.Protocol` at once — each side serves
 * one RpcGroup and calls the other. Frames are routed by kind. Writes made in
 * the same tick go out as one socket write.
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

/** Why a channel closed. */
export type CloseReason =
  | { readonly _tag: "Ended" }
  | { readonly _tag: "Invalid"; readonly error: Framing.FrameError }
  | { readonly _tag: "Error"; readonly message: string }

/** An open channel. */
export interface Channel {
  /** Queues a frame; frames queued in one tick are written together. */
  readonly send: (kind: Framing.Kind, body: unknown) => void
  /** Frames of kind Handshake and Heartbeat; RPC frames go to the protocols, fast-path frames to `onFrame`. */
  readonly control: Queue.Dequeue<Framing.Frame>
  /**
   * Handles fast-path frames (Call, Reply, Cancel) synchronously as they arrive: the per-call
   * path of the mesh skips queues and fibers it does not need.
   */
  readonly onFrame: (kind: Framing.Kind, handler: (body: unknown) => void) => void
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

/** Opens a channel over a duplex byte stream; closing the Scope ends it. */
export const make = (
  stream: Duplex,
  options: ChannelOptions = {}
): Effect.Effect<Channel, never, Scope.Scope> =>
  Effect.gen(function* () {
    const decoder = new Framing.Decoder(options.maxFrameBytes ?? Framing.defaultMaxFrameBytes)
    const closed = yield* Deferred.make<CloseReason>()
    const control = yield* Queue.unbounded<Framing.Frame>()
    const toServer = yield* Queue.unbounded<FromClientEncoded>()
    const toClient = yield* Queue.unbounded<FromServerEncoded>()
    let open = true
    const fastHandlers = new Map<number, (body: unknown) => void>()

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
      Deferred.unsafeDone(closed, Effect.succeed(reason))
    }

    const onData = (chunk: Buffer) => {
      let frames: Array<Framing.Frame>
      try {
        frames = decoder.push(chunk)
      } catch (error) {
        finish(
          error instanceof Framing.FrameError
            ? { _tag: "Invalid", error }
            : { _tag: "Error", message: error instanceof Error ? error.message : String(error) }
        )
        return
      }
      for (const frame of frames) {
        switch (frame.kind) {
          case Framing.Kind.ToServer:
            toServer.unsafeOffer(frame.body as FromClientEncoded)
            break
          case Framing.Kind.ToClient:
            toClient.unsafeOffer(frame.body as FromServerEncoded)
            break
          case Framing.Kind.Call:
          case Framing.Kind.Reply:
          case Framing.Kind.Cancel: {
            const handler = fastHandlers.get(frame.kind)
            if (handler !== undefined) handler(frame.body)
            break
          }
          default:
            control.unsafeOffer(frame)
        }
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

    let corked = false
    const uncork = () => {
      corked = false
      if (open) stream.uncork()
    }
    const send = (kind: Framing.Kind, body: unknown) => {
      if (!open) return
      if (!corked) {
        corked = true
        stream.cork()
        process.nextTick(uncork)
      }
      stream.write(Framing.encode(kind, body))
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
        send: (_clientId, response) => Effect.sync(() => channel.send(Framing.Kind.ToClient, response)),
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
          channel.isOpen()
            ? Effect.sync(() => channel.send(Framing.Kind.ToServer, request))
            : Effect.fail(
                new RpcClientError.RpcClientError({ reason: "Protocol", message: "the channel is closed" })
              ),
        supportsAck: true,
        supportsTransferables: false
      }
    })
  )
