/**
 * Context calls on the fast path (docs/protocol.md §6.1), both ends over a real unix socket: what
 * a plugin's caller gets for every outcome of the host's handler, that interruption and a closed
 * channel reach the other side, and what the host answers to calls it cannot run.
 */
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import { PermissionDenied } from "../src/Errors.js"
import * as Framing from "../src/Framing.js"
import * as HostCalls from "../src/HostCalls.js"
import * as PluginChannel from "../src/PluginChannel.js"

/** Two connected sockets on a unix socket in a private temp dir; closed and removed with the Scope. */
const socketPair = Effect.acquireRelease(
  Effect.async<{
    readonly dir: string
    readonly server: net.Server
    readonly a: net.Socket
    readonly b: net.Socket
  }>((resume) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bh-hostcalls-"))
    const file = path.join(dir, "s")
    const server = net.createServer()
    server.once("error", (error) => {
      fs.rmSync(dir, { recursive: true, force: true })
      resume(Effect.die(error))
    })
    server.listen(file, () => {
      server.once("connection", (a) => resume(Effect.succeed({ dir, server, a, b })))
      const b = net.createConnection(file)
    })
  }),
  ({ dir, server, a, b }) =>
    Effect.async<void>((resume) => {
      a.destroy()
      b.destroy()
      server.close(() => {
        fs.rmSync(dir, { recursive: true, force: true })
        resume(Effect.void)
      })
    })
)

/** A host end and a plugin end of one channel, past the handshake. */
const channels = Effect.gen(function* () {
  const { a, b } = yield* socketPair
  const host = yield* PluginChannel.make(a)
  const plugin = yield* PluginChannel.make(b)
  host.send(Framing.Kind.Handshake, { type: "welcome" })
  plugin.send(Framing.Kind.Handshake, { type: "hello" })
  yield* host.control.take
  yield* plugin.control.take
  return { host, plugin }
})

const denied = new PermissionDenied({ permission: "events:publish:x", principal: "com.example.p" })

/** The host's side: what the tests' handlers do, by the published type or the key. */
const serveOn = (host: PluginChannel.Channel) =>
  Effect.gen(function* () {
    const logged: Array<unknown> = []
    const held = yield* Deferred.make<void>()
    const interrupted = yield* Deferred.make<void>()
    const handle = (tag: HostCalls.Tag, payload: unknown): Effect.Effect<unknown, unknown> => {
      const input = payload as { readonly type?: string; readonly key?: string }
      switch (tag) {
        case "Log":
          return Effect.sync(() => logged.push(payload))
        case "StorageRetrieve":
          return Effect.succeed(input.key === "k" ? new Uint8Array([1, 2, 255]) : null)
        case "Publish":
          if (input.type === "denied") return Effect.fail(denied)
          if (input.type === "boom") return Effect.dieMessage("the handler exploded")
          if (input.type === "hold") {
            return Deferred.succeed(held, undefined).pipe(
              Effect.zipRight(Effect.never),
              Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined))
            )
          }
          return Effect.void
        default:
          return Effect.dieMessage(`unexpected ${tag}`)
      }
    }
    const stop = HostCalls.serve(host, handle, (effect) => Effect.runFork(effect))
    yield* Effect.addFinalizer(() => stop)
    return { logged, held, interrupted }
  })

describe("HostCalls", () => {
  it.scopedLive("results, typed errors and defects reach the caller as the contract says", () =>
    Effect.gen(function* () {
      const { host, plugin } = yield* channels
      yield* serveOn(host)
      const call = HostCalls.makeCaller(plugin)

      // Bytes cross as base64 and come back as bytes; null stays null.
      const bytes = yield* call.StorageRetrieve({ key: "k" })
      assert.deepStrictEqual(Array.from(bytes as Uint8Array), [1, 2, 255])
      assert.isNull(yield* call.StorageRetrieve({ key: "other" }))
      assert.isUndefined(yield* call.Publish({ type: "fine", data: { n: 1 } }))

      const error = yield* Effect.flip(call.Publish({ type: "denied", data: null }))
      assert.instanceOf(error, PermissionDenied)
      assert.deepStrictEqual(error, denied)

      const defect = yield* Effect.exit(call.Publish({ type: "boom", data: null }))
      assert.isTrue(Exit.isFailure(defect) && Cause.isDie(defect.cause))
      const died = Exit.isFailure(defect) ? Cause.squash(defect.cause) : undefined
      assert.instanceOf(died, HostCalls.HostCallDefect)
      assert.include((died as Error).message, "the handler exploded")
    })
  )

  it.scopedLive("a log is a notification: the host runs it, nothing is waited for", () =>
    Effect.gen(function* () {
      const { host, plugin } = yield* channels
      const { logged } = yield* serveOn(host)
      const call = HostCalls.makeCaller(plugin)
      yield* call.Log({ level: "info", message: "hello" })
      // Frames arrive in order: once a later call is answered, the log has been run.
      yield* call.StorageRetrieve({ key: "other" })
      assert.deepStrictEqual(logged, [{ level: "info", message: "hello" }])
    })
  )

  it.scopedLive("interrupting the caller interrupts the host's handler", () =>
    Effect.gen(function* () {
      const { host, plugin } = yield* channels
      const { held, interrupted } = yield* serveOn(host)
      const call = HostCalls.makeCaller(plugin)
      const fiber = yield* Effect.fork(call.Publish({ type: "hold", data: null }))
      yield* Deferred.await(held)
      yield* Fiber.interrupt(fiber)
      yield* Deferred.await(interrupted).pipe(Effect.timeout("5 seconds"))
      // The channel carries on.
      assert.isUndefined(yield* call.Publish({ type: "fine", data: null }))
    })
  )

  it.scopedLive("a call in flight when the channel closes dies at once", () =>
    Effect.gen(function* () {
      const { host, plugin } = yield* channels
      const { held } = yield* serveOn(host)
      const call = HostCalls.makeCaller(plugin)
      const fiber = yield* Effect.fork(call.Publish({ type: "hold", data: null }))
      yield* Deferred.await(held)
      yield* host.close
      const exit = yield* Fiber.await(fiber).pipe(Effect.timeout("5 seconds"))
      assert.isTrue(Exit.isFailure(exit))
      const died = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
      assert.instanceOf(died, HostCalls.HostCallDefect)
    })
  )

  it.scopedLive("a call the host cannot run is answered as a defect, saying why; a notification is not", () =>
    Effect.gen(function* () {
      const { host, plugin } = yield* channels
      yield* serveOn(host)
      const replies: Array<unknown> = []
      plugin.onFrame(Framing.Kind.Reply, (body) => replies.push(body))
      plugin.send(Framing.Kind.Call, [0, "host", "Nope", {}])
      plugin.send(Framing.Kind.Call, [0, "host", "Publish", { type: 5 }])
      plugin.send(Framing.Kind.Call, [7, "host", "Nope", {}])
      plugin.send(Framing.Kind.Call, [8, "elsewhere", "Publish", { type: "x", data: 1 }])
      plugin.send(Framing.Kind.Call, [9, "host", "Publish", { type: 5 }])
      plugin.send(Framing.Kind.Call, [10, "host", "Publish", { type: "fine", data: 1 }])
      for (let i = 0; i < 200 && replies.length < 4; i++) yield* Effect.sleep("10 millis")
      assert.deepStrictEqual(replies.slice(0, 2), [
        [7, 2, "no context call host.Nope"],
        [8, 2, "no context call elsewhere.Publish"]
      ])
      const [invalid, fine] = replies.slice(2) as Array<ReadonlyArray<unknown>>
      assert.strictEqual(invalid![0], 9)
      assert.strictEqual(invalid![1], 2)
      assert.include(String(invalid![2]), "invalid payload for Publish")
      assert.include(String(invalid![2]), "type")
      assert.deepStrictEqual(fine, [10, 0])
      // The notifications got no answer, and the channel is still open.
      yield* Effect.sleep("50 millis")
      assert.lengthOf(replies, 4)
      assert.isTrue(Option.isNone(yield* Deferred.poll(host.closed)))
    })
  )
})
