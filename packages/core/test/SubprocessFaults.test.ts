/**
 * Faults of subprocess plugins, each with a real child process: killed mid-call, hung, out of
 * memory, over its socket limit, garbage on the channel, a crash loop, SIGTERM ignored, the host
 * itself killed, and a graceful stop. Every check reads the host's side (the manager's view, the
 * process table), not what the plugin says about itself.
 */

import * as childProcess from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"
import type * as Errors from "@blackhole/sdk/Errors"
import { PluginUnavailable } from "@blackhole/sdk/Errors"
import * as Framing from "@blackhole/sdk/Framing"
import * as PluginManifest from "@blackhole/sdk/PluginManifest"
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { EventBus } from "../src/EventBus.js"
import * as NodeTest from "../src/NodeTest.js"
import { type PluginInfo, PluginManager, type RestartPolicy } from "../src/PluginManager.js"
import * as Principal from "../src/Principal.js"
import { ServiceRegistry } from "../src/ServiceRegistry.js"
import * as SubprocessLoader from "../src/SubprocessLoader.js"
import { Conformance } from "./fixtures/plugins/conformance/contract.mjs"
import { captureLogs, isGone, type LogLine, procState } from "./support.js"

const fixtures = fileURLToPath(new URL("./fixtures/", import.meta.url))

// The fixtures' contracts, as a caller declares them (the plugins' own copies live in their index.mjs).
const Echo = ServiceContract.make(
  "echo",
  RpcGroup.make(
    ServiceContract.read(Rpc.make("echo", { payload: { text: Schema.String }, success: Schema.String })),
    ServiceContract.read(Rpc.make("pid", { success: Schema.Number })),
    ServiceContract.admin(Rpc.make("busyLoop")),
    ServiceContract.read(Rpc.make("sleep", { payload: { millis: Schema.Number } }))
  )
)
const Hog = ServiceContract.make(
  "hog",
  RpcGroup.make(
    ServiceContract.read(Rpc.make("pid", { success: Schema.Number })),
    ServiceContract.admin(Rpc.make("allocate")),
    ServiceContract.admin(Rpc.make("allocateOffHeap"))
  )
)
const Sockets = ServiceContract.make(
  "sockets",
  RpcGroup.make(
    ServiceContract.read(Rpc.make("pid", { success: Schema.Number })),
    ServiceContract.admin(Rpc.make("open", { payload: { count: Schema.Number }, success: Schema.Number }))
  )
)
const Babbler = ServiceContract.make(
  "babbler",
  RpcGroup.make(
    ServiceContract.read(Rpc.make("pid", { success: Schema.Number })),
    ServiceContract.admin(Rpc.make("write", { payload: { hex: Schema.String } })),
    ServiceContract.admin(Rpc.make("writeAndExit", { payload: { hex: Schema.String, code: Schema.Number } }))
  )
)
const Stubborn = ServiceContract.make(
  "stubborn",
  RpcGroup.make(
    ServiceContract.read(Rpc.make("pid", { success: Schema.Number })),
    ServiceContract.read(Rpc.make("sleep", { payload: { millis: Schema.Number } }))
  )
)

/** Short intervals so each fault resolves in a second or two. */
const fastLoader: Partial<SubprocessLoader.SubprocessOptions> = {
  heartbeatIntervalMillis: 250,
  heartbeatDeadlineMillis: 1500,
  stopGraceMillis: 1000,
  sampleIntervalMillis: 100
}
const fastRestart: RestartPolicy = { initialDelayMillis: 50, maxRestarts: 3, windowMillis: 10_000 }
/** Quarantine after the second restart within 10 s. */
const crashLoopRestart: RestartPolicy = { ...fastRestart, maxRestarts: 2 }

/** How a test runs a fixture: loader options and restart policy over the fast defaults, a config, a manifest edit. */
interface FixtureOptions {
  readonly loader?: Partial<SubprocessLoader.SubprocessOptions>
  readonly restart?: RestartPolicy
  readonly config?: unknown
  readonly manifest?: (manifest: PluginManifest.PluginManifest) => PluginManifest.PluginManifest
}

/** Registers and starts the fixture plugin in `fixtures/plugins/<name>`; returns its id. */
const startFixture = (name: string, options: FixtureOptions = {}) =>
  Effect.gen(function* () {
    const manager = yield* PluginManager
    const id = yield* register(name, options)
    yield* manager.start(id)
    return id
  })

/** Registers the fixture plugin in `fixtures/plugins/<name>` without starting it; returns its id. */
const register = (name: string, options: FixtureOptions = {}) =>
  Effect.gen(function* () {
    const directory = path.join(fixtures, "plugins", name)
    const decoded = yield* PluginManifest.decodeJson(
      fs.readFileSync(path.join(directory, "plugin.json"), "utf8"),
      directory
    )
    const manifest = options.manifest?.(decoded) ?? decoded
    const manager = yield* PluginManager
    yield* manager.registerWith(
      manifest,
      SubprocessLoader.make({ directory, manifest, ...fastLoader, ...options.loader }),
      { config: options.config ?? {}, restart: options.restart ?? fastRestart }
    )
    return manifest.id
  })

/** Polls `probe` every 50 ms until `ok` holds; dies naming `what` and the last value after `timeoutMillis`. */
const waitFor = <A, E, R>(
  probe: Effect.Effect<A, E, R>,
  ok: (value: A) => boolean,
  what: string,
  timeoutMillis = 5000
) =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeoutMillis
    for (;;) {
      const value = yield* probe
      if (ok(value)) return value
      if (Date.now() > deadline) {
        return yield* Effect.dieMessage(
          `not reached within ${timeoutMillis} ms: ${what}; last: ${JSON.stringify(value)}`
        )
      }
      yield* Effect.sleep(Duration.millis(50))
    }
  })

/** The manager's view of a plugin. */
const info = (id: string) => Effect.flatMap(PluginManager, (manager) => manager.get(id))

/** Waits until the plugin runs again in a process other than `oldPid`. */
const restartedFrom = (id: string, oldPid: number, timeoutMillis = 5000) =>
  waitFor(
    info(id),
    (plugin) => plugin.state === "running" && plugin.pid !== null && plugin.pid !== oldPid,
    `${id} running again in a new process (old pid ${oldPid})`,
    timeoutMillis
  )

/** The typed failure a call ended with, or a test failure naming what it ended with instead. */
const failureOf = <A, E>(exit: Exit.Exit<A, E>): E => {
  if (Exit.isSuccess(exit))
    return assert.fail(`expected a failure, got success ${JSON.stringify(exit.value)}`)
  const failure = Cause.failureOption(exit.cause)
  if (Option.isNone(failure)) return assert.fail(`expected a typed failure, got ${Cause.pretty(exit.cause)}`)
  return failure.value
}

/** Awaits a forked call for at most `millis`; dies if it is still running then. */
const awaitCall = <A, E>(fiber: Fiber.Fiber<A, E>, millis: number, what: string) =>
  Fiber.await(fiber).pipe(
    Effect.timeoutFail({
      duration: Duration.millis(millis),
      onTimeout: () => new Error(`${what} still in flight after ${millis} ms`)
    }),
    Effect.orDie
  )

const hex = (bytes: ReadonlyArray<number> | Buffer) => Buffer.from(bytes).toString("hex")

/** The hog with a limit it can idle under: its idle RSS is ~85 MB (see the skipped 64MB test). */
const roomyHog: FixtureOptions = {
  manifest: (manifest) => ({ ...manifest, resources: { maxMemory: "192MB" } })
}

/** Spawns `fixtures/hosts/<script>` as a separate host; SIGKILLed and reaped when the Scope closes, if it runs. */
const spawnHost = (script: string, args: ReadonlyArray<string> = []) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const host = childProcess.spawn(process.execPath, [path.join(fixtures, "hosts", script), ...args], {
        stdio: ["ignore", "pipe", "pipe"]
      })
      const output = { stdout: "", stderr: "" }
      host.stdout!.on("data", (chunk: Buffer) => {
        output.stdout += chunk.toString()
      })
      host.stderr!.on("data", (chunk: Buffer) => {
        output.stderr += chunk.toString()
      })
      return { host, output }
    }),
    ({ host }) =>
      Effect.async<void>((resume) => {
        if (host.exitCode !== null || host.signalCode !== null) return resume(Effect.void)
        host.once("exit", () => resume(Effect.void))
        host.kill("SIGKILL")
      })
  )

/** What a host script's result line starts with (its other lines are logs). */
const resultPrefix = "RESULT "

/** Runs a host script to its end (at most `timeoutMillis`): how it exited and what it printed. */
const runHost = (script: string, args: ReadonlyArray<string>, timeoutMillis: number) =>
  Effect.gen(function* () {
    const { host, output } = yield* spawnHost(script, args)
    const exit = yield* Effect.async<{ code: number | null; signal: string | null }>((resume) => {
      if (host.exitCode !== null || host.signalCode !== null) {
        return resume(Effect.succeed({ code: host.exitCode, signal: host.signalCode }))
      }
      host.once("close", (code, signal) => resume(Effect.succeed({ code, signal })))
    }).pipe(
      Effect.timeoutFail({
        duration: Duration.millis(timeoutMillis),
        onTimeout: () => new Error(`${script} still running after ${timeoutMillis} ms: ${output.stderr}`)
      }),
      Effect.orDie
    )
    return { ...exit, ...output }
  })

describe("subprocess faults: the process dies", () => {
  it.scopedLive("SIGKILL mid-call: the call fails with PluginUnavailable, the plugin restarts", () =>
    Effect.gen(function* () {
      const id = yield* startFixture("echo")
      const echo = (yield* ServiceRegistry).client(Principal.operator, Echo)
      const pid = yield* echo.pid()
      assert.notStrictEqual(pid, process.pid)
      assert.strictEqual((yield* info(id)).pid, pid)

      const call = yield* Effect.fork(echo.sleep({ millis: 10_000 }))
      // The call is in flight once the plugin is in its handler; give the frame a moment to cross.
      yield* Effect.sleep(Duration.millis(200))
      assert.isNull(call.unsafePoll())
      process.kill(pid, "SIGKILL")

      const error = failureOf(yield* awaitCall(call, 3000, "the call to the killed plugin"))
      assert.instanceOf(error, PluginUnavailable)

      const after = yield* restartedFrom(id, pid)
      assert.isAtLeast(after.restarts, 1)
      assert.strictEqual(after.lastExit?.reason, "killed")
      assert.strictEqual(after.lastExit?.signal, "SIGKILL")
      assert.isTrue(isGone(pid))
      assert.strictEqual(yield* echo.echo({ text: "still here" }), "still here")
      assert.strictEqual(yield* echo.pid(), after.pid)
    }).pipe(Effect.provide(NodeTest.layer()))
  )

  it.scopedLive("a busy loop misses the heartbeat deadline: killed as hung, restarted within 5 s", () =>
    Effect.gen(function* () {
      const id = yield* startFixture("echo")
      const echo = (yield* ServiceRegistry).client(Principal.operator, Echo)
      const pid = yield* echo.pid()

      const loop = yield* Effect.fork(echo.busyLoop())
      const after = yield* restartedFrom(id, pid, 5000)
      assert.strictEqual(after.lastExit?.reason, "hang")
      assert.isAtLeast(after.restarts, 1)
      assert.isTrue(isGone(pid))
      assert.instanceOf(failureOf(yield* awaitCall(loop, 1000, "the busy-loop call")), PluginUnavailable)
      assert.strictEqual(yield* echo.echo({ text: "awake" }), "awake")
      assert.strictEqual(yield* echo.pid(), after.pid)
    }).pipe(Effect.provide(NodeTest.layer()))
  )

  it.scopedLive("a host that stalls for twice the heartbeat deadline kills no plugin as hung", () =>
    Effect.gen(function* () {
      const id = yield* startFixture("echo")
      const echo = (yield* ServiceRegistry).client(Principal.operator, Echo)
      const pid = yield* echo.pid()
      // The host's event loop blocked for 3 s (deadline 1.5 s): the plugin's answers wait unread in
      // the pipe, and the host's heartbeat timer runs late; that is the host's stall, not a hang.
      yield* Effect.sync(() => {
        const until = Date.now() + 3000
        while (Date.now() < until) {
          // Blocking on purpose.
        }
      })
      yield* Effect.sleep("2 seconds")
      const after = yield* info(id)
      assert.strictEqual(after.state, "running")
      assert.strictEqual(after.pid, pid)
      assert.strictEqual(after.restarts, 0)
      assert.strictEqual(yield* echo.echo({ text: "still here" }), "still here")
    }).pipe(Effect.provide(NodeTest.layer()))
  )

  it.scopedLive(
    "a heap blow-up is V8's out-of-memory abort: classified oom, its call fails, it restarts",
    () =>
      Effect.gen(function* () {
        // One RSS sample at start, the next a minute later: the heap flag (¾ of maxMemory) ends the blow-up,
        // not the sampler (whose kill is the next test's).
        const id = yield* startFixture("fault-hog", { ...roomyHog, loader: { sampleIntervalMillis: 60_000 } })
        const hog = (yield* ServiceRegistry).client(Principal.operator, Hog)
        const pid = yield* hog.pid()

        const call = yield* Effect.fork(hog.allocate())
        const after = yield* restartedFrom(id, pid, 10_000)
        assert.strictEqual(after.lastExit?.reason, "oom")
        assert.isTrue(
          after.lastExit?.signal === "SIGABRT" || after.lastExit?.code === 134,
          JSON.stringify(after.lastExit)
        )
        assert.isAtLeast(after.restarts, 1)
        assert.isTrue(isGone(pid))
        assert.instanceOf(failureOf(yield* awaitCall(call, 1000, "the allocating call")), PluginUnavailable)
        assert.strictEqual(yield* hog.pid(), after.pid)
      }).pipe(Effect.provide(NodeTest.layer()))
  )

  it.scopedLive("resident memory over maxMemory outside the V8 heap is a limit-memory kill", () =>
    Effect.gen(function* () {
      const id = yield* startFixture("fault-hog", roomyHog)
      const hog = (yield* ServiceRegistry).client(Principal.operator, Hog)
      const pid = yield* hog.pid()

      yield* Effect.fork(hog.allocateOffHeap())
      const after = yield* restartedFrom(id, pid, 10_000)
      assert.strictEqual(after.lastExit?.reason, "limit-memory")
      assert.strictEqual(after.lastExit?.signal, "SIGKILL")
    }).pipe(Effect.provide(NodeTest.layer()))
  )

  // An idle runtime holds ~90 MB resident: a smaller maxMemory could never run, so it is refused up front.
  it.scopedLive("a maxMemory below the plugin-process floor does not start, and says why", () =>
    Effect.gen(function* () {
      const manager = yield* PluginManager
      const id = yield* register("fault-hog")
      const error = yield* Effect.flip(manager.start(id))
      assert.strictEqual(error._tag, "PluginFailure")
      assert.include(error.message, "maxMemory 64MB is below 128MB")
      const failed = yield* info(id)
      assert.strictEqual(failed.state, "failed")
      assert.isNull(failed.pid)
    }).pipe(Effect.provide(NodeTest.layer()))
  )

  it.scopedLive(
    "no handshake within the start timeout is reported as that, not as the kill that follows",
    () =>
      Effect.gen(function* () {
        const manager = yield* PluginManager
        // No process says hello within 1 ms of its spawn.
        const id = yield* register("echo", { loader: { startTimeoutMillis: 1 } })
        const error = yield* Effect.flip(manager.start(id))
        assert.strictEqual(error._tag, "PluginFailure")
        assert.include(error.message, "no handshake within 1 ms")
        assert.notInclude(error.message, "exited before its handshake")
      }).pipe(Effect.provide(NodeTest.layer()))
  )

  it.scopedLive("a context call over the frame cap fails its caller at once; the plugin keeps serving", () =>
    Effect.gen(function* () {
      // 2 KiB frames: a 1,500-character text fits in the Call, its bytes as base64 do not fit in the
      // plugin's StorageStore.
      yield* startFixture("conformance", { loader: { maxFrameBytes: 2048 }, config: { label: "capped" } })
      const conformance = (yield* ServiceRegistry).client(Principal.operator, Conformance)
      const started = Date.now()
      const error = yield* Effect.flip(conformance.store({ key: "big", text: "x".repeat(1500) }))
      assert.isBelow(Date.now() - started, 5000)
      assert.strictEqual(error._tag, "PluginFailure")
      assert.include((error as Errors.PluginFailure).reason, "larger than the channel's frame cap")
      yield* conformance.store({ key: "small", text: "fits" })
      assert.strictEqual(yield* conformance.retrieve({ key: "small" }), "fits")
    }).pipe(Effect.provide(NodeTest.layer()))
  )

  it.scopedLive("a plugin's stdout and stderr reach the node's log tagged with its id, rate-limited", () => {
    const lines: Array<LogLine> = []
    return Effect.gen(function* () {
      const id = yield* startFixture("conformance", {
        loader: { logLinesPerSecond: 3 },
        config: { label: "loud" }
      })
      const conformance = (yield* ServiceRegistry).client(Principal.operator, Conformance)
      for (let i = 0; i < 10; i++) yield* conformance.print({ text: `out ${i}` })
      yield* Effect.sleep("1100 millis")
      yield* conformance.print({ text: "after the window" })
      const seen = (prefix: string) => lines.filter((line) => line.message.startsWith(prefix))
      for (let i = 0; i < 100 && seen("[stderr] after").length === 0; i++) yield* Effect.sleep("20 millis")
      // Each stream has its own limit: 3 lines a second pass, the rest are counted.
      for (const stream of ["stdout", "stderr"]) {
        assert.deepStrictEqual(
          seen(`[${stream}] out `).map((line) => line.message),
          [`[${stream}] out 0`, `[${stream}] out 1`, `[${stream}] out 2`]
        )
        assert.lengthOf(seen(`[${stream}] 7 lines from ${id} dropped (over 3/s)`), 1)
        assert.lengthOf(seen(`[${stream}] after the window`), 1)
      }
      assert.isTrue(seen("[std").every((line) => line.annotations.plugin === id))
    }).pipe(Effect.provide(NodeTest.layer()), Effect.provide(captureLogs(lines)))
  })

  it.scopedLive(
    "a plugin's Logger lines are rate-limited: the rest are counted and reported, not written",
    () => {
      const logs: Array<LogLine> = []
      return Effect.gen(function* () {
        const id = yield* startFixture("conformance", {
          loader: { logLinesPerSecond: 5 },
          config: { label: "chatty" }
        })
        const conformance = (yield* ServiceRegistry).client(Principal.operator, Conformance)
        // Well within one second: with its start-up greeting, 5 pass and 16 are dropped.
        for (let i = 0; i < 20; i++) yield* conformance.log({ message: `line ${i}` })
        yield* Effect.sleep("1100 millis")
        // The next line after the window reports what the last one dropped.
        yield* conformance.log({ message: "after the window" })
        const report = `16 log lines from ${id} dropped (over 5/s)`
        const lines = () => logs.map((line) => line.message)
        for (let i = 0; i < 100 && !lines().includes(report); i++) yield* Effect.sleep("20 millis")
        assert.include(lines(), report)
        assert.deepStrictEqual(
          lines().filter((line) => line.startsWith("line ")),
          ["line 0", "line 1", "line 2", "line 3"]
        )
        assert.include(lines(), "after the window")
      }).pipe(Effect.provide(NodeTest.layer()), Effect.provide(captureLogs(logs)))
    }
  )

  it.scopedLive("more open sockets than maxSockets 2 is a limit kill, then a restart", () =>
    Effect.gen(function* () {
      const id = yield* startFixture("fault-sockets")
      const sockets = (yield* ServiceRegistry).client(Principal.operator, Sockets)
      const pid = yield* sockets.pid()

      // Loopback only: a server on 127.0.0.1 and ten connections to it, held open.
      yield* Effect.fork(sockets.open({ count: 10 }))
      const after = yield* restartedFrom(id, pid)
      assert.strictEqual(after.lastExit?.reason, "limit-sockets")
      assert.isAtLeast(after.restarts, 1)
      assert.isTrue(isGone(pid))
      assert.strictEqual(yield* sockets.pid(), after.pid)
    }).pipe(Effect.provide(NodeTest.layer()))
  )
})

/** A frame header: u32 big-endian length (kind + body), u8 kind. */
const header = (length: number, kind: number) => {
  const bytes = Buffer.alloc(5)
  bytes.writeUInt32BE(length, 0)
  bytes.writeUInt8(kind, 4)
  return bytes
}

/** Bytes the babbler writes straight to its channel, each of which must fail it. */
const babble: ReadonlyArray<{ readonly name: string; readonly bytes: Buffer }> = [
  { name: "raw text that is no frame", bytes: Buffer.from("garbage") },
  { name: "a header announcing 4 GiB", bytes: Buffer.from([0xff, 0xff, 0xff, 0xff, 1]) },
  {
    name: "a well-sized frame whose body is not JSON",
    bytes: Buffer.concat([header(9, 2), Buffer.from("{not json")])
  },
  { name: "a frame of an unknown kind", bytes: Buffer.concat([header(3, 9), Buffer.from("{}")]) }
]

describe("subprocess faults: a call that does not answer", () => {
  it.scopedLive("each call fails with PluginUnavailable at its own deadline; the plugin keeps serving", () =>
    Effect.gen(function* () {
      yield* startFixture("echo", { loader: { callTimeoutMillis: 600 } })
      const echo = (yield* ServiceRegistry).client(Principal.operator, Echo)
      const started = Date.now()
      const timed = <A, E>(call: Effect.Effect<A, E>) =>
        Effect.fork(Effect.map(Effect.exit(call), (exit) => ({ exit, at: Date.now() - started })))
      const first = yield* timed(echo.sleep({ millis: 10_000 }))
      yield* Effect.sleep(Duration.millis(300))
      const second = yield* timed(echo.sleep({ millis: 10_000 }))
      // A call made in between that answers in time is not disturbed by the others' deadlines.
      yield* echo.sleep({ millis: 50 })

      const firstDone = yield* Fiber.join(first)
      const secondDone = yield* Fiber.join(second)
      for (const done of [firstDone, secondDone]) {
        const error = failureOf(done.exit)
        assert.instanceOf(error, PluginUnavailable)
        assert.include(error.message, "echo.sleep did not answer within 600 ms")
      }
      // Each call has its own deadline, counted from when it was made.
      assert.isAtLeast(firstDone.at, 600)
      assert.isAtLeast(secondDone.at, 900)
      assert.isAtLeast(secondDone.at - firstDone.at, 200)
      assert.isBelow(secondDone.at, 5000)
      assert.strictEqual(yield* echo.echo({ text: "still serving" }), "still serving")
    }).pipe(Effect.provide(NodeTest.layer()))
  )
})

describe("subprocess faults: garbage on the channel", () => {
  it.scopedLive(
    "invalid bytes fail the plugin and it restarts; the host and other plugins are fine, memory flat",
    () =>
      Effect.gen(function* () {
        const manager = yield* PluginManager
        const registry = yield* ServiceRegistry
        const echo = registry.client(Principal.operator, Echo)
        const babbler = registry.client(Principal.operator, Babbler)
        yield* startFixture("echo")
        const id = yield* startFixture("fault-babbler", { restart: { ...fastRestart, maxRestarts: 10 } })
        const rssBefore = process.memoryUsage().rss

        for (const { name, bytes } of babble) {
          const pid = yield* babbler.pid()
          const restartsBefore = (yield* manager.get(id)).restarts
          // The call may answer before the host reads the garbage, or fail with the process: either is fine.
          yield* Effect.exit(babbler.write({ hex: hex(bytes) }))
          const after = yield* restartedFrom(id, pid).pipe(
            Effect.catchAllDefect((defect) => Effect.dieMessage(`${name}: ${String(defect)}`))
          )
          assert.strictEqual(after.lastExit?.reason, "crash", name)
          assert.isAbove(after.restarts, restartsBefore, name)
          assert.isTrue(isGone(pid), name)
          // The other plugin never noticed.
          assert.strictEqual(yield* echo.echo({ text: name }), name)
        }
        const grown = process.memoryUsage().rss - rssBefore
        assert.isBelow(grown, 100 * 1024 * 1024, `host RSS grew by ${grown} bytes`)
      }).pipe(Effect.provide(NodeTest.layer()))
  )

  it.scopedLive("a truncated frame and then exit — with code 1 or 0 — fails the plugin and it restarts", () =>
    Effect.gen(function* () {
      const babbler = (yield* ServiceRegistry).client(Principal.operator, Babbler)
      const id = yield* startFixture("fault-babbler")
      // A header announcing 1000 bytes, then 14 of them.
      const truncated = Buffer.concat([header(1000, 2), Buffer.from('{"_tag":"Exit"')])
      for (const code of [1, 0]) {
        const pid = yield* babbler.pid()
        yield* Effect.exit(babbler.writeAndExit({ hex: hex(truncated), code }))
        const after = yield* restartedFrom(id, pid)
        // Exit code 0 after a broken frame is no clean stop.
        assert.strictEqual(after.lastExit?.reason, "crash", `exit(${code})`)
        assert.isTrue(isGone(pid))
      }
    }).pipe(Effect.provide(NodeTest.layer()))
  )

  // A well-framed body of the wrong shape: a fast-path Reply that is no `[id, outcome, value]` once threw in
  // the host's "data" listener and killed the host; RPC bodies that are no RPC message were ignored. Run in a
  // separate host process, so a host crash fails this test and nothing else.
  it.scopedLive("a well-framed body of the wrong shape fails the plugin and never the host", () =>
    Effect.gen(function* () {
      const frames = [
        Framing.encode(Framing.Kind.Reply, null),
        Framing.encode(Framing.Kind.ToClient, 42),
        Framing.encode(Framing.Kind.ToClient, { _tag: "Nonsense" }),
        Framing.encode(Framing.Kind.ToServer, { _tag: "Nonsense" })
      ]
      const { code, signal, stdout, stderr } = yield* runHost("babble.mjs", frames.map(hex), 25_000)
      assert.strictEqual(code, 0, `the host died (${code ?? signal}): ${stderr}`)
      const line = stdout.split("\n").find((text) => text.startsWith(resultPrefix))
      assert.isDefined(line, `no result from the host: ${stdout}`)
      const results = JSON.parse(line!.slice(resultPrefix.length)) as Array<{
        frame: string
        restarted: boolean
        lastExit: PluginInfo["lastExit"]
      }>
      assert.strictEqual(results.length, frames.length)
      for (const result of results) {
        const body = Buffer.from(result.frame, "hex").toString("utf8", Framing.headerBytes)
        assert.isTrue(result.restarted, `kind ${Buffer.from(result.frame, "hex")[4]} ${body}`)
        assert.strictEqual(result.lastExit?.reason, "crash", body)
      }
    })
  )

  it.scopedLive("garbage while the program starts fails the start with a typed error; the host is fine", () =>
    Effect.gen(function* () {
      const manager = yield* PluginManager
      const rssBefore = process.memoryUsage().rss
      for (const { name, bytes } of babble.slice(0, 2)) {
        const id = yield* register("fault-babbler", { config: { onStart: hex(bytes) } })
        const error = failureOf(yield* Effect.exit(manager.start(id)))
        assert.strictEqual(error._tag, "PluginFailure", name)
        const after = yield* manager.get(id)
        assert.strictEqual(after.state, "failed", name)
        assert.isNull(after.pid, name)
        yield* manager.unregister(id)
      }
      const grown = process.memoryUsage().rss - rssBefore
      assert.isBelow(grown, 100 * 1024 * 1024, `host RSS grew by ${grown} bytes`)
    }).pipe(Effect.provide(NodeTest.layer()))
  )
})

describe("subprocess faults: supervision", () => {
  it.scopedLive("a crash loop is quarantined after maxRestarts within the window; start lifts it", () =>
    Effect.gen(function* () {
      const manager = yield* PluginManager
      const bus = yield* EventBus
      const quarantines = yield* bus.subscribe("plugin.quarantined")
      const id = yield* startFixture("fault-crashloop", { restart: crashLoopRestart })

      const quarantined = yield* waitFor(
        info(id),
        (plugin) => plugin.state === "quarantined",
        "the crash loop quarantined",
        20_000
      )
      assert.strictEqual(quarantined.restarts, crashLoopRestart.maxRestarts)
      assert.strictEqual(quarantined.lastExit?.reason, "crash")
      assert.strictEqual(quarantined.lastExit?.code, 1)
      assert.isNull(quarantined.pid)
      const event = yield* quarantines.stream.pipe(
        Stream.take(1),
        Stream.runCollect,
        Effect.map(Chunk.unsafeHead)
      )
      assert.match(String((event.data as { reason?: unknown }).reason), /quarantine/)

      // No further restarts until asked (well past every backoff delay).
      yield* Effect.sleep(Duration.millis(500))
      const still = yield* manager.get(id)
      assert.strictEqual(still.state, "quarantined")
      assert.strictEqual(still.restarts, quarantined.restarts)

      yield* manager.start(id)
      const lifted = yield* manager.get(id)
      assert.strictEqual(lifted.state, "running")
      assert.isNotNull(lifted.pid)
    }).pipe(Effect.provide(NodeTest.layer()))
  )

  it.scopedLive("a quarantined plugin reports why in PluginInfo.error", () =>
    Effect.gen(function* () {
      const id = yield* startFixture("fault-crashloop", { restart: crashLoopRestart })
      const quarantined = yield* waitFor(
        info(id),
        (plugin) => plugin.state === "quarantined",
        "the crash loop quarantined",
        20_000
      )
      assert.match(quarantined.error ?? "", /quarantine/)
    }).pipe(Effect.provide(NodeTest.layer()))
  )

  it.scopedLive(
    "SIGTERM ignored and a 60 s finalizer: stop still ends the process with SIGKILL after the grace",
    () =>
      Effect.gen(function* () {
        const manager = yield* PluginManager
        const grace = 500
        const id = yield* startFixture("fault-stubborn", { loader: { stopGraceMillis: grace } })
        const pid = yield* (yield* ServiceRegistry).client(Principal.operator, Stubborn).pid()

        const started = Date.now()
        yield* manager.stop(id)
        const took = Date.now() - started
        // The Stop call (up to a grace) → channel closed, a wait (min(1 s, grace)) → SIGTERM → grace →
        // SIGKILL: at most three graces, plus a margin.
        assert.isBelow(took, 3 * grace + 1500, `stop took ${took} ms`)
        assert.isTrue(isGone(pid), `pid ${pid} is ${procState(pid)}`)
        const after = yield* manager.get(id)
        assert.strictEqual(after.state, "stopped")
        assert.strictEqual(after.lastExit?.reason, "killed")
        assert.strictEqual(after.lastExit?.signal, "SIGKILL")
        assert.isNull(after.pid)
      }).pipe(Effect.provide(NodeTest.layer()))
  )

  it.scopedLive("graceful stop: lastExit clean, the process gone, and stop is idempotent", () =>
    Effect.gen(function* () {
      const manager = yield* PluginManager
      const id = yield* startFixture("echo")
      const pid = yield* (yield* ServiceRegistry).client(Principal.operator, Echo).pid()

      yield* manager.stop(id)
      const stopped = yield* manager.get(id)
      assert.strictEqual(stopped.state, "stopped")
      assert.strictEqual(stopped.lastExit?.reason, "clean")
      assert.strictEqual(stopped.lastExit?.code, 0)
      assert.strictEqual(stopped.restarts, 0)
      assert.isNull(stopped.pid)
      assert.isTrue(isGone(pid))

      yield* manager.stop(id)
      const again: PluginInfo = yield* manager.get(id)
      assert.deepStrictEqual(again, stopped)
    }).pipe(Effect.provide(NodeTest.layer()))
  )
})

/** Kills whatever of `pids` is still alive when the Scope closes (a failed test must not leave orphans). */
const killOnExit = (pids: ReadonlyArray<number>) =>
  Effect.addFinalizer(() =>
    Effect.sync(() => {
      for (const pid of pids) {
        if (isGone(pid)) continue
        try {
          process.kill(pid, "SIGKILL")
        } catch {
          // Gone meanwhile.
        }
      }
    })
  )

describe("subprocess faults: the host dies", () => {
  it.scopedLive(
    "the host SIGKILLed while one plugin busy-loops and another is mid-call: no plugin process alive 2 s later",
    () =>
      Effect.gen(function* () {
        const { host, output } = yield* spawnHost("orphans.mjs")
        const line = yield* Effect.async<string, Error>((resume) => {
          const lines = readline.createInterface({ input: host.stdout! })
          lines.on("line", (text) => {
            if (text.startsWith(resultPrefix)) resume(Effect.succeed(text.slice(resultPrefix.length)))
          })
          host.once("exit", (code, signal) =>
            resume(
              Effect.fail(new Error(`host exited (${code ?? signal}) before reporting: ${output.stderr}`))
            )
          )
        }).pipe(
          Effect.timeoutFail({
            duration: Duration.seconds(20),
            onTimeout: () => new Error(`host did not report its plugins within 20 s: ${output.stderr}`)
          }),
          Effect.orDie
        )
        const report = JSON.parse(line) as { host: number; plugins: Array<number> }
        assert.strictEqual(report.host, host.pid)
        assert.strictEqual(report.plugins.length, 2)
        yield* killOnExit(report.plugins)
        for (const pid of report.plugins)
          assert.isFalse(isGone(pid), `plugin ${pid} runs before the host dies`)

        process.kill(host.pid!, "SIGKILL")
        const states = yield* waitFor(
          Effect.sync(() => report.plugins.map((pid) => ({ pid, state: procState(pid) }))),
          (all) => all.every(({ state }) => state === null || state === "Z"),
          "every plugin process gone after the host was SIGKILLed",
          2000
        )
        assert.strictEqual(states.length, 2)
      })
  )
})
