/**
 * Context calls on the fast path (docs/protocol.md §6): the unary plugin → host rpcs of
 * `PluginProtocol.PluginToHost` (publish, storage, mesh calls) travel as `Call`/`Reply`/`Cancel`
 * frames, as mesh calls do the other way, instead of as @effect/rpc requests. The contract is the
 * same RpcGroup: its payload, success and error schemas encode and decode both ends; only the
 * per-request bookkeeping of RpcClient and RpcServer is skipped (most of a context call's cost).
 *
 * Ids are per direction: a plugin's calls to its host and the host's mesh calls to it never share
 * a handler (the plugin handles `Reply` and the host `Call`/`Cancel` here; the other way round for
 * the mesh).
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as CancellableCall from "./CancellableCall.js"
import * as Framing from "./Framing.js"
import type * as PluginChannel from "./PluginChannel.js"
import { PluginToHost } from "./PluginProtocol.js"

/** The `service` of a context call's `Call` frame; its `method` is the rpc's tag. */
export const service = "host"

/** The rpcs that travel as frames: every unary one a plugin awaits, and Log, which it does not. */
export const tags = [
  "Publish",
  "StorageStore",
  "StorageRetrieve",
  "StorageDelete",
  "StorageList",
  "Call",
  "Log"
] as const
/** A context call on the fast path. */
export type Tag = (typeof tags)[number]

/**
 * The id of a call that wants no `Reply` (a notification: `Log`). The plugin's own ids start at 1;
 * the host runs such a call and answers nothing, whatever its outcome.
 */
export const notification = 0

/** The tags sent as notifications: the plugin does not wait for them. */
const notifications: ReadonlySet<string> = new Set<Tag>(["Log"])

type AnySchema = Schema.Schema<unknown, unknown>

/** One rpc's codecs, built once. Every one is synchronous for these schemas (no async transformations). */
interface Codec {
  readonly encodePayload: (payload: unknown) => Either.Either<unknown, ParseResult.ParseError>
  readonly decodePayload: (encoded: unknown) => Either.Either<unknown, ParseResult.ParseError>
  readonly encodeSuccess: (value: unknown) => Either.Either<unknown, ParseResult.ParseError>
  readonly decodeSuccess: (encoded: unknown) => Either.Either<unknown, ParseResult.ParseError>
  readonly encodeError: (error: unknown) => Either.Either<unknown, ParseResult.ParseError>
  readonly decodeError: (encoded: unknown) => Either.Either<unknown, ParseResult.ParseError>
}

const codecs = new Map<string, Codec>(
  tags.map((tag) => {
    const rpc = PluginToHost.requests.get(tag)!
    const payload = rpc.payloadSchema as unknown as AnySchema
    const success = rpc.successSchema as unknown as AnySchema
    const error = rpc.errorSchema as unknown as AnySchema
    return [
      tag,
      {
        encodePayload: Schema.encodeUnknownEither(payload),
        decodePayload: Schema.decodeUnknownEither(payload),
        encodeSuccess: Schema.encodeUnknownEither(success),
        decodeSuccess: Schema.decodeUnknownEither(success),
        encodeError: Schema.encodeUnknownEither(error),
        decodeError: Schema.decodeUnknownEither(error)
      }
    ]
  })
)

const noCancel = () => {}

/** A context call the host could not answer with its contract's success or error (a defect there). */
export class HostCallDefect extends Error {
  override readonly name = "HostCallDefect"
}

/**
 * The plugin side: one function per fast-path tag, each `(payload) => Effect` with the rpc's
 * success and error, over `channel`. A call whose caller is interrupted sends `Cancel`; when the
 * channel closes, calls in flight die (the host is gone: its replacement reports it).
 */
export const makeCaller = (
  channel: PluginChannel.Channel
): Record<Tag, (payload: unknown) => Effect.Effect<unknown, unknown>> => {
  let nextId = 0
  const pending = new Map<number, (exit: Exit.Exit<unknown, unknown>) => void>()
  channel.onFrame(Framing.Kind.Reply, (body) => {
    const [id, outcome, value] = body as [number, 0 | 1 | 2, unknown]
    const done = pending.get(id)
    if (done === undefined) return
    pending.delete(id)
    done(
      outcome === 0
        ? Exit.succeed(value)
        : outcome === 1
          ? Exit.fail(value)
          : Exit.die(new HostCallDefect(String(value)))
    )
  })
  channel.onClose(() => {
    const failed = Array.from(pending.values())
    pending.clear()
    for (const done of failed) done(Exit.die(new HostCallDefect("the channel to the host closed")))
  })

  const notify = (tag: Tag) => {
    const codec = codecs.get(tag)!
    return (payload: unknown): Effect.Effect<unknown, unknown> =>
      Effect.suspend(() => {
        const encoded = codec.encodePayload(payload)
        if (Either.isLeft(encoded)) return Effect.die(encoded.left)
        // Like an rpc request sent with `discard`: nothing to wait for, and a channel that is gone
        // or a line over the cap loses the line, not the caller.
        channel.send(Framing.Kind.Call, [notification, service, tag, encoded.right])
        return Effect.void
      })
  }

  const caller = (tag: Tag) => {
    const codec = codecs.get(tag)!
    const settle = (exit: Exit.Exit<unknown, unknown>): Exit.Exit<unknown, unknown> => {
      if (Exit.isSuccess(exit)) {
        const decoded = codec.decodeSuccess(exit.value)
        return Either.isRight(decoded) ? Exit.succeed(decoded.right) : Exit.die(decoded.left)
      }
      const failure = Cause.failureOption(exit.cause)
      if (failure._tag === "None") return exit
      const decoded = codec.decodeError(failure.value)
      return Either.isRight(decoded) ? Exit.fail(decoded.right) : Exit.die(decoded.left)
    }
    return (payload: unknown): Effect.Effect<unknown, unknown> =>
      CancellableCall.make<unknown, unknown>((done) => {
        const encoded = codec.encodePayload(payload)
        if (Either.isLeft(encoded)) {
          done(Exit.die(encoded.left))
          return noCancel
        }
        const id = ++nextId
        const sent = channel.send(Framing.Kind.Call, [id, service, tag, encoded.right])
        if (sent !== "sent") {
          done(
            Exit.die(
              new HostCallDefect(
                sent === "closed"
                  ? "the channel to the host is closed"
                  : "request larger than the channel's frame cap"
              )
            )
          )
          return noCancel
        }
        pending.set(id, (exit) => done(settle(exit)))
        return () => {
          if (pending.delete(id)) channel.send(Framing.Kind.Cancel, [id])
        }
      })
  }
  return Object.fromEntries(
    tags.map((tag) => [tag, notifications.has(tag) ? notify(tag) : caller(tag)])
  ) as Record<Tag, (payload: unknown) => Effect.Effect<unknown, unknown>>
}

/**
 * The host side: answers the plugin's context calls on `channel` with `handle(tag, payload)` (the
 * same handlers its RpcServer serves), each in a fiber started by `fork`; a `Cancel` interrupts
 * its call. Returns what interrupts every call still running and waits until they have ended (the
 * plugin is going away).
 */
export const serve = (
  channel: PluginChannel.Channel,
  handle: (tag: Tag, payload: unknown) => Effect.Effect<unknown, unknown>,
  fork: (effect: Effect.Effect<unknown, unknown>) => Fiber.RuntimeFiber<unknown, unknown>
): Effect.Effect<void> => {
  const running = new Map<number, Fiber.RuntimeFiber<unknown, unknown>>()
  const reply = (id: number, body: readonly [number, 0 | 1 | 2, unknown] | readonly [number, 0]) => {
    if (channel.send(Framing.Kind.Reply, body) === "too-large") {
      channel.send(Framing.Kind.Reply, [id, 2, "the result is larger than the channel's frame cap"])
    }
  }
  const answer = (id: number, codec: Codec, exit: Exit.Exit<unknown, unknown>) => {
    if (Exit.isSuccess(exit)) {
      const encoded = codec.encodeSuccess(exit.value)
      return Either.isRight(encoded)
        ? reply(id, encoded.right === undefined ? [id, 0] : [id, 0, encoded.right])
        : reply(id, [id, 2, `unencodable result: ${encoded.left.message}`])
    }
    const failure = Cause.failureOption(exit.cause)
    if (failure._tag === "Some") {
      const encoded = codec.encodeError(failure.value)
      if (Either.isRight(encoded)) return reply(id, [id, 1, encoded.right])
    }
    reply(id, [id, 2, Cause.pretty(exit.cause)])
  }
  channel.onFrame(Framing.Kind.Call, (body) => {
    const [id, callService, tag, payload] = body as [number, string, string, unknown]
    const codec = callService === service ? codecs.get(tag) : undefined
    if (codec === undefined) {
      return id === notification ? undefined : reply(id, [id, 2, `no context call ${callService}.${tag}`])
    }
    const decoded = codec.decodePayload(payload)
    if (Either.isLeft(decoded)) {
      if (id === notification) return
      return reply(id, [
        id,
        2,
        `invalid payload for ${tag}: ${ParseResult.TreeFormatter.formatErrorSync(decoded.left)}`
      ])
    }
    const fiber = fork(handle(tag as Tag, decoded.right))
    if (id === notification) return
    running.set(id, fiber)
    fiber.addObserver((exit) => {
      running.delete(id)
      answer(id, codec, exit)
    })
  })
  channel.onFrame(Framing.Kind.Cancel, (body) => {
    const [id] = body as [number]
    running.get(id)?.unsafeInterruptAsFork(FiberId.none)
  })
  return Effect.suspend(() => Fiber.interruptAll(Array.from(running.values())))
}
