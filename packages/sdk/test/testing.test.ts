import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Events from "../src/Events.js"
import * as Hooks from "../src/Hooks.js"
import { NodeInfo } from "../src/NodeInfo.js"
import * as Plugin from "../src/Plugin.js"
import * as PluginConfig from "../src/PluginConfig.js"
import * as PluginLogger from "../src/PluginLogger.js"
import * as PluginStorage from "../src/PluginStorage.js"
import * as ServiceContract from "../src/ServiceContract.js"
import * as Services from "../src/Services.js"
import { PluginTest, TestRecorder } from "../src/testing.js"

// --- The example plugin: counts `content.*` events, remembers each, and says so on the bus ---

const Counter = ServiceContract.make(
  "counter",
  RpcGroup.make(ServiceContract.read(Rpc.make("count", { success: Schema.Number })))
)

const Config = PluginConfig.make(
  Schema.Struct({ greeting: Schema.optionalWith(Schema.String, { default: () => "hi" }) })
)

const Seen = Schema.Struct({ type: Schema.String, source: Schema.String, greeting: Schema.String })

const Example = Plugin.service({
  manifest: {
    id: "com.example.seen",
    name: "Seen",
    version: "1.0.0",
    type: "service",
    permissions: ["events:subscribe:content.*", "events:publish:content.seen", "storage:write"],
    services: ["counter"]
  },
  config: Config,
  program: Effect.gen(function* () {
    const { greeting } = yield* Config
    const count = yield* Ref.make(0)
    yield* Events.on("content.*", (event) =>
      Effect.gen(function* () {
        // Its own `content.seen` matches `content.*` too: reacting to it would loop forever.
        if (event.type === "content.seen") return
        const n = yield* Ref.updateAndGet(count, (n) => n + 1)
        yield* PluginStorage.storeJson(`seen/${event.id}`, Seen, {
          type: event.type,
          source: event.source,
          greeting
        })
        yield* PluginLogger.info(`${greeting}: ${event.type}`, { source: event.source })
        yield* Events.publish("content.seen", { type: event.type, count: n })
      })
    )
    return { services: [ServiceContract.implement(Counter, { count: () => Ref.get(count) })] as const }
  })
})

const decoder = new TextDecoder()
const encoder = new TextEncoder()

describe("PluginTest.run", () => {
  it.scoped("decodes the config with the plugin's schema, so defaults apply", () =>
    Effect.gen(function* () {
      const { recorder } = yield* PluginTest.run(Example)
      yield* recorder.emit("content.created", { id: 1 }, "com.example.cms")
      const logs = yield* PluginTest.eventually(
        Effect.filterOrFail(recorder.logs, (logs) => logs.length === 1)
      )
      assert.deepStrictEqual(logs, [
        { level: "info", message: "hi: content.created", annotations: { source: "com.example.cms" } }
      ])
    })
  )

  it.scoped("records what an injected event made the plugin store, log and publish", () =>
    Effect.gen(function* () {
      const { recorder } = yield* PluginTest.run(Example, { config: { greeting: "hello" } })
      assert.deepStrictEqual(yield* recorder.subscriptions, ["content.*"])

      yield* recorder.emit("content.created", { id: 1 }, "com.example.cms")
      yield* recorder.emit("other.thing", {}, "com.example.cms")
      const published = yield* PluginTest.eventually(
        Effect.filterOrFail(recorder.published, (published) => published.length === 1)
      )

      assert.deepStrictEqual(published, [
        { type: "content.seen", data: { type: "content.created", count: 1 } }
      ])
      const stored = yield* recorder.stored
      assert.strictEqual(stored.length, 1)
      const [key, value] = stored[0]!
      assert.match(key, /^seen\//)
      assert.deepStrictEqual(JSON.parse(decoder.decode(value)), {
        type: "content.created",
        source: "com.example.cms",
        greeting: "hello"
      })
      assert.deepStrictEqual(
        (yield* recorder.writes).map((write) => [write._tag, write.key]),
        [["Store", key]]
      )
      assert.deepStrictEqual(
        (yield* recorder.logs).map((line) => line.message),
        ["hello: content.created"]
      )
    })
  )

  it.scoped("serves the plugin's own service through the encoded path", () =>
    Effect.gen(function* () {
      const { client, handlers, recorder } = yield* PluginTest.run(Example)
      assert.strictEqual(handlers.services.length, 1)
      assert.strictEqual(yield* client(Counter).count(), 0)

      yield* recorder.emit("content.created", null)
      yield* recorder.emit("content.updated", null)
      const count = yield* PluginTest.eventually(
        Effect.filterOrFail(client(Counter).count(), (count) => count === 2)
      )
      assert.strictEqual(count, 2)
    })
  )

  it.scoped("a config of the wrong type fails with InvalidConfig naming the path", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(PluginTest.run(Example, { config: { greeting: 42 } }))
      assert.strictEqual(error._tag, "InvalidConfig")
      if (error._tag !== "InvalidConfig") return
      assert.strictEqual(error.pluginId, "com.example.seen")
      // Every issue is at `greeting` (a union such as an optional field reports one per member).
      assert.deepStrictEqual([...new Set(error.issues.map((issue) => issue.path))], ["greeting"])
    })
  )

  it.scoped("a subscription outside the granted permissions fails the program with PermissionDenied", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(PluginTest.run(Example, { permissions: ["storage:*"] }))
      assert.strictEqual(error._tag, "PermissionDenied")
      if (error._tag !== "PermissionDenied") return
      assert.strictEqual(error.permission, "events:subscribe:content.*")
      assert.strictEqual(error.principal, "com.example.seen")
    })
  )

  it.scoped("runs with exactly the manifest's permissions when asked", () =>
    Effect.gen(function* () {
      const { recorder } = yield* PluginTest.run(Example, { permissions: "manifest" })
      yield* recorder.emit("content.created", null)
      yield* PluginTest.eventually(
        Effect.filterOrFail(recorder.published, (published) => published.length === 1)
      )
    })
  )

  it.scoped("refuses a returned service the manifest does not declare", () =>
    Effect.gen(function* () {
      const Undeclared = Plugin.service({
        manifest: { id: "com.example.undeclared", name: "Undeclared", version: "1.0.0", type: "service" },
        config: PluginConfig.none,
        program: Effect.succeed({
          services: [ServiceContract.implement(Counter, { count: () => Effect.succeed(0) })] as const
        })
      })
      const error = yield* Effect.flip(PluginTest.run(Undeclared))
      assert.strictEqual(error._tag, "PluginFailure")
    })
  )
})

describe("PluginTest.packageDrift", () => {
  it.effect("reports a plugin.json and a config.schema.json that no longer match the code", () =>
    Effect.gen(function* () {
      const dir = fs.mkdtempSync(nodePath.join(os.tmpdir(), "bh-drift-"))
      try {
        const manifest = { ...Example.manifest, configuration: { $schema: "config.schema.json" } }
        const definition = { ...Example, manifest }
        fs.writeFileSync(nodePath.join(dir, "plugin.json"), JSON.stringify(manifest))
        fs.writeFileSync(
          nodePath.join(dir, "config.schema.json"),
          JSON.stringify(PluginConfig.toJsonSchema(Example.config))
        )
        assert.deepStrictEqual(yield* PluginTest.packageDrift(dir, definition), [])

        fs.writeFileSync(nodePath.join(dir, "plugin.json"), JSON.stringify({ ...manifest, version: "9.9.9" }))
        fs.writeFileSync(nodePath.join(dir, "config.schema.json"), "{}")
        const problems = yield* PluginTest.packageDrift(dir, definition)
        assert.strictEqual(problems.length, 2)
        assert.include(problems[0], "plugin.json differs")
        assert.include(problems[1], "config.schema.json is stale")
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    })
  )
})

describe("custom hooks in the test kit", () => {
  it.scoped(
    "a plugin runs its own hook; a before hook refuses it; built-in hooks and missing grants fail",
    () =>
      Effect.gen(function* () {
        const seen: Array<unknown> = []
        yield* Hooks.register("shop.before.order", (payload) => {
          seen.push(payload)
          return (payload as { total: number }).total > 100 ? Hooks.veto("too expensive") : Effect.void
        })
        yield* Hooks.run("shop.before.order", { total: 5 })
        const refused = yield* Effect.flip(Hooks.run("shop.before.order", { total: 500 }))
        assert.strictEqual(refused._tag, "HookVetoed")
        assert.strictEqual(refused._tag === "HookVetoed" ? refused.hook : "", "shop.before.order")
        assert.include(refused.message, "too expensive")
        assert.deepStrictEqual(seen, [{ total: 5 }, { total: 500 }])
        const builtin = yield* Effect.exit(Hooks.run("storage.before.write", {}))
        assert.isTrue(builtin._tag === "Failure" && builtin.cause._tag === "Die")
        const denied = yield* Effect.flip(Hooks.run("other.before.thing", {}))
        assert.strictEqual(denied._tag, "PermissionDenied")
      }).pipe(
        Effect.provide(
          PluginTest.layer({
            permissions: ["hooks:register:shop.before.order", "hooks:run:shop.before.order"]
          })
        )
      )
  )
})

describe("PluginTest.layer", () => {
  it.scoped("a storage write without storage:write fails with PermissionDenied", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(PluginStorage.storeJson("k", Schema.Number, 1))
      assert.strictEqual(error._tag, "PermissionDenied")
      if (error._tag !== "PermissionDenied") return
      assert.strictEqual(error.permission, "storage:write")
      assert.strictEqual(error.principal, "com.example.seen")
      const recorder = yield* TestRecorder
      assert.deepStrictEqual(yield* recorder.writes, [])
      // Reads are still granted.
      assert.isTrue(Option.isNone(yield* PluginStorage.retrieveJson("k", Schema.Number)))
    }).pipe(Effect.provide(PluginTest.layer({ definition: Example, permissions: ["storage:read"] })))
  )

  it.scoped("storage copies bytes in and out", () =>
    Effect.gen(function* () {
      const storage = yield* PluginStorage.PluginStorage
      const bytes = encoder.encode("abc")
      yield* storage.store("b", bytes)
      bytes[0] = 0
      const read = yield* storage.retrieve("b")
      assert.strictEqual(decoder.decode(Option.getOrThrow(read)), "abc")
      assert.deepStrictEqual(yield* storage.list(), ["a", "b"])
      assert.isTrue(yield* storage.delete("a"))
      assert.isFalse(yield* storage.delete("a"))
      const recorder = yield* TestRecorder
      assert.deepStrictEqual(
        (yield* recorder.writes).map((write) => write._tag),
        ["Store", "Delete", "Delete"]
      )
      assert.deepStrictEqual(
        (yield* recorder.stored).map(([key]) => key),
        ["b"]
      )
    }).pipe(Effect.provide(PluginTest.layer({ storage: [["a", encoder.encode("seed")]] })))
  )

  it.scoped("provides NodeInfo defaults with overrides", () =>
    Effect.gen(function* () {
      const info = yield* NodeInfo
      assert.deepStrictEqual(info, { nodeId: "12D3KooWTestNode", version: "0.2.0", environment: "test" })
    }).pipe(Effect.provide(PluginTest.layer({ nodeInfo: { version: "0.2.0" } })))
  )

  it.scoped("delivers published events to subscribers with the plugin id as source", () =>
    Effect.gen(function* () {
      const events = yield* Events.Events
      const stream = yield* events.subscribe("a.*")
      yield* Events.publish("a.b", 1)
      yield* Events.publish("c.d", 2)
      const recorder = yield* TestRecorder
      yield* recorder.emit("a.c", 3, "other.plugin")
      const received = yield* Stream.runCollect(Stream.take(stream, 2))
      assert.deepStrictEqual(
        [...received].map((event) => [event.type, event.source, event.data]),
        [
          ["a.b", "test.plugin", 1],
          ["a.c", "other.plugin", 3]
        ]
      )
      assert.deepStrictEqual(yield* recorder.published, [
        { type: "a.b", data: 1 },
        { type: "c.d", data: 2 }
      ])
    }).pipe(Effect.provide(PluginTest.layer()))
  )

  it.scoped("calls fake services through the encoded path and records them", () =>
    Effect.gen(function* () {
      const counter = yield* Services.client(Counter)
      assert.strictEqual(yield* counter.count(), 7)
      const recorder = yield* TestRecorder
      const calls = yield* recorder.calls
      assert.deepStrictEqual(
        calls.map(({ service, method }) => [service, method]),
        [["counter", "count"]]
      )
    }).pipe(
      Effect.provide(
        PluginTest.layer({
          permissions: ["service:counter:read"],
          services: [ServiceContract.implement(Counter, { count: () => Effect.succeed(7) })]
        })
      )
    )
  )

  it.scoped("a mesh call without a grant fails with PermissionDenied", () =>
    Effect.gen(function* () {
      const counter = yield* Services.client(Counter)
      const error = yield* Effect.flip(counter.count())
      assert.strictEqual(error._tag, "PermissionDenied")
      const recorder = yield* TestRecorder
      assert.deepStrictEqual(yield* recorder.calls, [])
    }).pipe(
      Effect.provide(
        PluginTest.layer({
          permissions: ["service:counter:write"],
          services: [ServiceContract.implement(Counter, { count: () => Effect.succeed(7) })]
        })
      )
    )
  )

  it.scoped("runs registered hooks in order and surfaces a veto", () =>
    Effect.gen(function* () {
      const order = yield* Ref.make<ReadonlyArray<string>>([])
      yield* Hooks.register("storage.before.write", (write) =>
        Ref.update(order, (o) => [...o, `second:${write.key}`]).pipe(
          Effect.zipRight(write.key.startsWith("locked/") ? Hooks.veto("locked") : Effect.void)
        )
      )
      yield* Hooks.register("storage.before.write", () => Ref.update(order, (o) => [...o, "first"]), {
        priority: -1
      })
      const recorder = yield* TestRecorder
      assert.deepStrictEqual(
        (yield* recorder.hooks).map((hook) => [hook.name, hook.priority]),
        [
          ["storage.before.write", -1],
          ["storage.before.write", 0]
        ]
      )
      const write = { namespace: "x", key: "open/1", value: encoder.encode("v"), principal: "core" }
      yield* recorder.runHook("storage.before.write", write)
      const veto = yield* Effect.flip(recorder.runHook("storage.before.write", { ...write, key: "locked/1" }))
      assert.strictEqual(veto.reason, "locked")
      assert.deepStrictEqual(yield* Ref.get(order), ["first", "second:open/1", "first", "second:locked/1"])
    }).pipe(Effect.provide(PluginTest.layer()))
  )

  it.scoped("a hook over its budget vetoes, on the test clock", () =>
    Effect.gen(function* () {
      yield* Hooks.register("content.before.publish", () => Effect.never, { timeoutMillis: 50 })
      const recorder = yield* TestRecorder
      const running = yield* Effect.fork(Effect.flip(recorder.runHook("content.before.publish", null)))
      yield* TestClock.adjust("50 millis")
      const veto = yield* Fiber.join(running)
      assert.strictEqual(veto.reason, "hook timed out after 50 ms")
    }).pipe(Effect.provide(PluginTest.layer()))
  )

  it.scoped("after hooks all run; the first failure is still reported", () =>
    Effect.gen(function* () {
      const ran = yield* Ref.make(0)
      yield* Hooks.register("storage.after.delete", () =>
        Effect.zipRight(
          Ref.update(ran, (n) => n + 1),
          Hooks.veto("no")
        )
      )
      yield* Hooks.register("storage.after.delete", () => Ref.update(ran, (n) => n + 1))
      const recorder = yield* TestRecorder
      const veto = yield* Effect.flip(
        recorder.runHook("storage.after.delete", { namespace: "x", key: "k", principal: "core" })
      )
      assert.strictEqual(veto.reason, "no")
      assert.strictEqual(yield* Ref.get(ran), 2)
    }).pipe(Effect.provide(PluginTest.layer()))
  )
})
