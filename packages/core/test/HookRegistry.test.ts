import { HookVetoed } from "@blackhole/sdk/Errors"
import * as Hooks from "@blackhole/sdk/Hooks"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as HashMap from "effect/HashMap"
import * as Logger from "effect/Logger"
import * as Scope from "effect/Scope"
import { HookRegistry, isBeforePhase, isValidHookName, layer } from "../src/HookRegistry.js"

interface LogLine {
  readonly level: string
  readonly message: string
  readonly annotations: Record<string, unknown>
}

/** A logger that records instead of printing, so tests can check what a failing hook logs. */
const captureLogs = () => {
  const lines: Array<LogLine> = []
  const logger = Logger.make(({ logLevel, message, annotations }) => {
    const parts = Array.isArray(message) ? message : [message]
    lines.push({
      level: logLevel.label,
      message: parts.map(String).join(" "),
      annotations: Object.fromEntries(HashMap.toEntries(annotations))
    })
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
}

/** A handler that records that it ran, under its owner's name. */
const recording = (ran: Array<string>, owner: string) => () =>
  Effect.sync(() => {
    ran.push(owner)
  })

describe("HookRegistry", () => {
  it.scoped("runs hooks by priority, equal priorities in registration order", () =>
    Effect.gen(function* () {
      const registry = yield* HookRegistry
      const ran: Array<string> = []
      const name = "storage.after.write"
      const hooks: ReadonlyArray<readonly [string, number | undefined]> = [
        ["a", 10],
        ["b", undefined],
        ["c", 0],
        ["d", -5],
        ["e", 10],
        ["f", 0]
      ]
      for (const [owner, priority] of hooks) {
        yield* registry.register(
          name,
          owner,
          recording(ran, owner),
          priority === undefined ? undefined : { priority }
        )
      }
      yield* registry.run(name, {})
      assert.deepStrictEqual(ran, ["d", "b", "c", "f", "a", "e"])
      yield* registry.run(name, {})
      assert.deepStrictEqual(ran.slice(6), ["d", "b", "c", "f", "a", "e"])
      const registrations = yield* registry.registrations
      assert.deepStrictEqual(
        registrations.map((r) => r.owner),
        ["d", "b", "c", "f", "a", "e"]
      )
      assert.deepStrictEqual(registrations[0], { name, owner: "d", priority: -5, timeoutMillis: 1000 })
    }).pipe(Effect.provide(layer()))
  )

  it.scoped("hooks receive the payload", () =>
    Effect.gen(function* () {
      const registry = yield* HookRegistry
      const seen: Array<unknown> = []
      yield* registry.register("content.published", "core", (payload) =>
        Effect.sync(() => seen.push(payload))
      )
      yield* registry.run("content.published", { id: 1 })
      assert.deepStrictEqual(seen, [{ id: 1 }])
    }).pipe(Effect.provide(layer()))
  )

  it.live("a failing, dying or timing-out after hook is logged and the rest still run", () => {
    const logs = captureLogs()
    return Effect.gen(function* () {
      const registry = yield* HookRegistry
      const ran: Array<string> = []
      const name = "storage.after.write"
      yield* Effect.scoped(
        Effect.gen(function* () {
          yield* registry.register(name, "failing", () => Effect.fail(new Error("disk on fire")))
          yield* registry.register(name, "dying", () => Effect.die(new Error("bug")))
          yield* registry.register(name, "throwing", () => {
            throw new Error("thrown")
          })
          yield* registry.register(name, "vetoing", () => Hooks.veto("too late"))
          yield* registry.register(name, "slow", () => Effect.never, { timeoutMillis: 50 })
          yield* registry.register(name, "fine", recording(ran, "fine"))
          const run = yield* Effect.fork(registry.run(name, {}))
          assert.isTrue(Exit.isSuccess(yield* Fiber.await(run)))
        })
      )
      assert.deepStrictEqual(ran, ["fine"])

      const byOwner = (owner: string) => logs.lines.find((line) => line.annotations.owner === owner)
      for (const owner of ["failing", "dying", "throwing", "vetoing", "slow"]) {
        const line = byOwner(owner)
        assert.isDefined(line, owner)
        assert.strictEqual(line?.annotations.hook, name)
        assert.include(line?.message, `hook ${name} of ${owner}`)
      }
      assert.strictEqual(byOwner("failing")?.level, "WARN")
      assert.include(byOwner("failing")?.message, "disk on fire")
      assert.strictEqual(byOwner("dying")?.level, "ERROR")
      assert.strictEqual(byOwner("throwing")?.level, "ERROR")
      assert.include(byOwner("vetoing")?.message, "only before hooks can veto")
      assert.strictEqual(byOwner("slow")?.level, "WARN")
      assert.include(byOwner("slow")?.message, "timed out after 50 ms")
      assert.isUndefined(byOwner("fine"))
    }).pipe(Effect.provide(layer()), Effect.provide(logs.layer))
  })

  it.scoped("a before veto stops the chain and names the owner", () =>
    Effect.gen(function* () {
      const registry = yield* HookRegistry
      const ran: Array<string> = []
      const name = "storage.before.write"
      yield* registry.register(name, "first", recording(ran, "first"))
      yield* registry.register(name, "guard", () => Hooks.veto("read-only namespace"))
      yield* registry.register(name, "last", recording(ran, "last"))
      const error = yield* Effect.flip(registry.run(name, {}))
      assert.instanceOf(error, HookVetoed)
      assert.deepStrictEqual(
        { hook: error.hook, by: error.by, reason: error.reason },
        { hook: name, by: "guard", reason: "read-only namespace" }
      )
      assert.deepStrictEqual(ran, ["first"])
    }).pipe(Effect.provide(layer()))
  )

  // Real time: hook deadlines are plain timers (cheap on the write path), not the TestClock.
  it.live("a before hook that fails, dies, throws or times out vetoes (fail closed)", () => {
    const logs = captureLogs()
    return Effect.gen(function* () {
      const registry = yield* HookRegistry
      const vetoOf = (owner: string, handler: (payload: unknown) => Effect.Effect<void, unknown>) =>
        Effect.scoped(
          Effect.gen(function* () {
            const ran: Array<string> = []
            yield* registry.register("service.before.call", owner, handler, { timeoutMillis: 100 })
            yield* registry.register("service.before.call", "after-it", recording(ran, "after-it"))
            const error = yield* Effect.flip(registry.run("service.before.call", {}))
            assert.deepStrictEqual(ran, [], "the chain stops at the failing hook")
            assert.strictEqual(error.by, owner)
            assert.strictEqual(error.hook, "service.before.call")
            return error.reason
          })
        )

      assert.strictEqual(
        yield* vetoOf("failing", () => Effect.fail("no database")),
        "hook failed: no database"
      )
      assert.match(yield* vetoOf("dying", () => Effect.die(new Error("bug"))), /^hook died: .*bug/)
      assert.match(
        yield* vetoOf("throwing", () => {
          throw new Error("thrown")
        }),
        /^hook died: .*thrown/
      )
      assert.strictEqual(yield* vetoOf("slow", () => Effect.never), "hook timed out after 100 ms")
      // Even a hook that ignores interruption cannot hold the operation past its budget.
      assert.strictEqual(
        yield* vetoOf("stubborn", () => Effect.uninterruptible(Effect.never)),
        "hook timed out after 100 ms"
      )
      assert.isTrue(logs.lines.some((line) => line.annotations.owner === "failing" && line.level === "WARN"))
      assert.isTrue(logs.lines.some((line) => line.annotations.owner === "dying" && line.level === "ERROR"))
    }).pipe(Effect.provide(layer()), Effect.provide(logs.layer))
  })

  it.live("failOpen: a failing or timing-out before hook is logged and skipped; a veto still vetoes", () => {
    const logs = captureLogs()
    return Effect.gen(function* () {
      const registry = yield* HookRegistry
      const ran: Array<string> = []
      const name = "storage.before.delete"
      yield* Effect.scoped(
        Effect.gen(function* () {
          yield* registry.register(name, "failing", () => Effect.fail(new Error("flaky")))
          yield* registry.register(name, "dying", () => Effect.die("bug"))
          yield* registry.register(name, "slow", () => Effect.never, { timeoutMillis: 20 })
          yield* registry.register(name, "fine", recording(ran, "fine"))
          const run = yield* Effect.fork(registry.run(name, {}))
          assert.isTrue(Exit.isSuccess(yield* Fiber.await(run)))
          assert.deepStrictEqual(ran, ["fine"])
          for (const owner of ["failing", "dying", "slow"]) {
            const line = logs.lines.find((l) => l.annotations.owner === owner)
            assert.include(line?.message, "skipped (failOpen)", owner)
          }

          yield* registry.register(name, "guard", () => Hooks.veto("no"), { priority: 1 })
          const error = yield* Effect.fork(Effect.flip(registry.run(name, {})))
          assert.strictEqual((yield* Fiber.join(error)).by, "guard")
        })
      )
    }).pipe(Effect.provide(layer({ failOpen: true })), Effect.provide(logs.layer))
  })

  it.live("layer defaultTimeoutMillis applies to hooks without their own", () =>
    Effect.gen(function* () {
      const registry = yield* HookRegistry
      yield* Effect.scoped(
        Effect.gen(function* () {
          yield* registry.register("protocol.before.message", "slow", () => Effect.never)
          const run = yield* Effect.fork(Effect.flip(registry.run("protocol.before.message", {})))
          assert.strictEqual((yield* Fiber.join(run)).reason, "hook timed out after 250 ms")
        })
      )
    }).pipe(Effect.provide(layer({ defaultTimeoutMillis: 250 })))
  )

  it.scoped("closing the Scope unregisters; with no hooks, run is the shared Effect.void", () =>
    Effect.gen(function* () {
      const registry = yield* HookRegistry
      const ran: Array<string> = []
      const name = "storage.before.write"
      // No allocation on the write path when nothing is registered: the very same constant.
      assert.strictEqual(registry.run(name, {}), Effect.void)

      const scope = yield* Scope.make()
      yield* registry.register(name, "plugin-a", recording(ran, "plugin-a")).pipe(Scope.extend(scope))
      yield* registry.register(name, "core", recording(ran, "core"))
      yield* registry.run(name, {})
      assert.deepStrictEqual(ran, ["plugin-a", "core"])

      yield* Scope.close(scope, Exit.void)
      yield* registry.run(name, {})
      assert.deepStrictEqual(ran, ["plugin-a", "core", "core"])
      assert.deepStrictEqual(
        (yield* registry.registrations).map((r) => r.owner),
        ["core"]
      )
    }).pipe(Effect.provide(layer()))
  )

  it.scoped("the last unregistration brings back the allocation-free path", () =>
    Effect.gen(function* () {
      const registry = yield* HookRegistry
      const scope = yield* Scope.make()
      yield* registry.register("storage.after.write", "x", () => Effect.void).pipe(Scope.extend(scope))
      assert.notStrictEqual(registry.run("storage.after.write", {}), Effect.void)
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(registry.run("storage.after.write", {}), Effect.void)
      assert.deepStrictEqual(yield* registry.registrations, [])
    }).pipe(Effect.provide(layer()))
  )

  it.scoped("an invalid hook name is a defect", () =>
    Effect.gen(function* () {
      const registry = yield* HookRegistry
      const exit = yield* Effect.exit(registry.register("Storage.Before", "x", () => Effect.void))
      assert.isTrue(Exit.isFailure(exit) && exit.cause._tag === "Die")
    }).pipe(Effect.provide(layer()))
  )

  it("isValidHookName and isBeforePhase", () => {
    for (const name of ["storage.before.write", "service.before.call", "my-plugin.after.sync", "a.b"]) {
      assert.isTrue(isValidHookName(name), name)
    }
    for (const name of ["storage", "", "Storage.before.write", "a..b", "a.b.", "1a.b", "a.b c", "a.*"]) {
      assert.isFalse(isValidHookName(name), name)
    }
    assert.isTrue(isBeforePhase("storage.before.write"))
    assert.isFalse(isBeforePhase("storage.after.write"))
    assert.isFalse(isBeforePhase("before.after.x"))
  })
})
