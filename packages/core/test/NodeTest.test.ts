import * as CoreServices from "@blackhole/sdk/CoreServices"
import type * as Errors from "@blackhole/sdk/Errors"
import * as Events from "@blackhole/sdk/Events"
import * as Hooks from "@blackhole/sdk/Hooks"
import * as Plugin from "@blackhole/sdk/Plugin"
import * as PluginConfig from "@blackhole/sdk/PluginConfig"
import * as PluginStorage from "@blackhole/sdk/PluginStorage"
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
import * as Services from "@blackhole/sdk/Services"
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { EventBus } from "../src/EventBus.js"
import * as NodeTest from "../src/NodeTest.js"
import { PluginManager } from "../src/PluginManager.js"
import * as Principal from "../src/Principal.js"
import * as Sandbox from "../src/Sandbox.js"
import { ServiceRegistry } from "../src/ServiceRegistry.js"
import { Storage } from "../src/Storage.js"

const manifest = <T extends Plugin.PluginType>(
  id: string,
  type: T,
  permissions: ReadonlyArray<string>,
  services: ReadonlyArray<string> = []
) => ({
  id,
  name: id,
  version: "1.0.0",
  type,
  permissions,
  services
})

// --- publisher: publishes content.created when asked over the mesh
const PublisherContract = ServiceContract.make(
  "publisher",
  RpcGroup.make(
    ServiceContract.write(Rpc.make("create", { payload: { id: Schema.String, title: Schema.String } }))
  )
)
const publisher = Plugin.service({
  manifest: manifest("com.example.publisher", "service", ["events:publish:content.*"], ["publisher"]),
  config: PluginConfig.none,
  program: Effect.gen(function* () {
    const events = yield* Events.Events
    return {
      services: [
        ServiceContract.implement(PublisherContract, {
          create: ({ id, title }) => events.publish("content.created", { id, title }).pipe(Effect.orDie)
        })
      ]
    }
  })
})

// --- indexer: subscribed to content.*, stores a record per event in its namespace
const IndexerContract = ServiceContract.make(
  "indexer",
  RpcGroup.make(ServiceContract.read(Rpc.make("count", { success: Schema.Number })))
)
const Record = Schema.Struct({ id: Schema.String, title: Schema.String, source: Schema.String })
const IndexerConfig = PluginConfig.make(
  Schema.Struct({ prefix: Schema.optionalWith(Schema.String, { default: () => "content/" }) })
)
const indexer = Plugin.service({
  manifest: manifest(
    "com.example.indexer",
    "service",
    ["events:subscribe:content.*", "storage:read", "storage:write"],
    ["indexer"]
  ),
  config: IndexerConfig,
  program: Effect.gen(function* () {
    const { prefix } = yield* IndexerConfig
    const storage = yield* PluginStorage.PluginStorage
    yield* Events.on("content.*", (event) => {
      const data = event.data as { id: string; title: string }
      return PluginStorage.storeJson(`${prefix}${data.id}`, Record, {
        id: data.id,
        title: data.title,
        source: event.source
      })
    })
    return {
      services: [
        ServiceContract.implement(IndexerContract, {
          count: () =>
            storage.list(prefix).pipe(
              Effect.map((keys) => keys.length),
              Effect.orDie
            )
        })
      ]
    }
  })
})

// --- probe: holds almost nothing, and reports what each context service refused
const ProbeContract = ServiceContract.make(
  "probe",
  RpcGroup.make(ServiceContract.read(Rpc.make("run", { success: Schema.Array(Schema.String) })))
)
const outcome = <A, E extends { readonly _tag: string }, R>(effect: Effect.Effect<A, E, R>, label: string) =>
  effect.pipe(
    Effect.match({
      onFailure: (error) => `${label}: ${error._tag === "PermissionDenied" ? "denied" : error._tag}`,
      onSuccess: () => `${label}: allowed`
    })
  )
const probe = Plugin.service({
  manifest: manifest("com.example.probe", "service", ["storage:read", "events:publish:probe.*"], ["probe"]),
  config: PluginConfig.none,
  program: Effect.gen(function* () {
    const events = yield* Events.Events
    const storage = yield* PluginStorage.PluginStorage
    const services = yield* Services.Services
    const hooks = yield* Hooks.Hooks
    return {
      services: [
        ServiceContract.implement(ProbeContract, {
          run: () =>
            Effect.scoped(
              Effect.all([
                outcome(events.publish("probe.ok", 1), "publish probe.ok"),
                outcome(events.publish("content.created", 1), "publish content.created"),
                outcome(events.subscribe("content.*"), "subscribe content.*"),
                outcome(storage.retrieve("k"), "storage read"),
                outcome(storage.store("k", new Uint8Array([1])), "storage write"),
                outcome(storage.delete("k"), "storage delete"),
                outcome(services.client(IndexerContract).count(), "call indexer.count"),
                outcome(
                  services
                    .client(CoreServices.Storage)
                    .store({ namespace: "x", key: "y", value: new Uint8Array() }),
                  "call storage.store"
                ),
                outcome(
                  hooks.register("storage.before.write", () => Effect.void),
                  "register storage.before.write"
                )
              ])
            )
        })
      ]
    }
  })
})

// --- hooks: a throwing after hook, a recording after hook, and a vetoing before hook
const HookLogContract = ServiceContract.make(
  "hooklog",
  RpcGroup.make(ServiceContract.read(Rpc.make("seen", { success: Schema.Array(Schema.String) })))
)
const hookPlugin = Plugin.service({
  manifest: manifest("com.example.hooks", "service", ["hooks:register:storage.*"], ["hooklog"]),
  config: PluginConfig.none,
  program: Effect.gen(function* () {
    const seen = yield* Ref.make<ReadonlyArray<string>>([])
    yield* Hooks.register("storage.after.write", () => Effect.die(new Error("after hook exploded")), {
      priority: -1
    })
    yield* Hooks.register("storage.after.write", (write) => Ref.update(seen, (s) => [...s, write.key]))
    yield* Hooks.register("storage.before.write", (write) =>
      write.key.startsWith("forbidden/")
        ? Hooks.veto(`no writes under forbidden/ (${write.key})`)
        : Effect.void
    )
    return { services: [ServiceContract.implement(HookLogContract, { seen: () => Ref.get(seen) })] }
  })
})

// --- fs: requests a sensitive permission the operator did not grant
const fsPlugin = Plugin.integration({
  manifest: manifest("com.example.fs", "integration", ["fs:write:/tmp/x", "network:connect:example.com"]),
  config: PluginConfig.none,
  program: Effect.succeed({ integration: { kind: "fs", sync: Effect.void } })
})

// --- lifecycle: a background fiber and a finalizer
const lifecycleState = { ticks: 0, finalized: false, delivered: 0 }
const lifecycle = Plugin.integration({
  manifest: manifest("com.example.lifecycle", "integration", ["events:subscribe:tick.*"]),
  config: PluginConfig.none,
  program: Effect.gen(function* () {
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        lifecycleState.finalized = true
      })
    )
    yield* Events.on("tick.*", () =>
      Effect.sync(() => {
        lifecycleState.delivered += 1
      })
    )
    yield* Effect.forkScoped(
      Effect.forever(
        Effect.zipRight(
          Effect.sync(() => {
            lifecycleState.ticks += 1
          }),
          Effect.sleep("1 millis")
        )
      )
    )
    return { integration: { kind: "lifecycle", sync: Effect.void } }
  })
})

const waitUntil = <E, R>(check: Effect.Effect<boolean, E, R>) =>
  Effect.gen(function* () {
    for (let i = 0; i < 1000; i++) {
      if (yield* check) return
      yield* Effect.sleep("2 millis")
    }
    return yield* Effect.dieMessage("condition not reached")
  })

const node = NodeTest.layer({ plugins: [publisher, indexer, probe, hookPlugin, fsPlugin, lifecycle] })

describe("NodeTest with compiled-in plugins", () => {
  it.scopedLive("an event published by one plugin is stored by its subscriber in its own namespace", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      const storage = yield* Storage
      yield* registry.client(Principal.operator, PublisherContract).create({ id: "a1", title: "Hello" })
      const index = registry.client(Principal.operator, IndexerContract)
      yield* waitUntil(Effect.map(index.count(), (n) => n === 1))
      const raw = yield* storage.retrieve(Sandbox.namespaceOf("com.example.indexer"), "content/a1")
      assert.isTrue(Option.isSome(raw))
      const record = JSON.parse(new TextDecoder().decode(Option.getOrThrow(raw)))
      // The host stamped the publisher as source.
      assert.deepStrictEqual(record, { id: "a1", title: "Hello", source: "com.example.publisher" })
    }).pipe(Effect.provide(node))
  )

  it.scopedLive("every context service refuses what an in-process plugin was not granted", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      const results = yield* registry.client(Principal.operator, ProbeContract).run()
      assert.deepStrictEqual(results, [
        "publish probe.ok: allowed",
        "publish content.created: denied",
        "subscribe content.*: denied",
        "storage read: allowed",
        "storage write: denied",
        "storage delete: denied",
        "call indexer.count: denied",
        "call storage.store: denied",
        "register storage.before.write: denied"
      ])
    }).pipe(Effect.provide(node))
  )

  it.scopedLive(
    "a throwing after hook does not break the write and the other hooks still run; a before hook vetoes",
    () =>
      Effect.gen(function* () {
        const registry = yield* ServiceRegistry
        const storage = yield* Storage
        yield* storage.store("core", "test", "ok/1", new Uint8Array([1]))
        assert.isTrue(Option.isSome(yield* storage.retrieve("test", "ok/1")))
        const seen = yield* registry.client(Principal.operator, HookLogContract).seen()
        assert.include(seen, "ok/1")

        const vetoed = yield* Effect.flip(storage.store("core", "test", "forbidden/1", new Uint8Array([1])))
        assert.strictEqual(vetoed._tag, "HookVetoed")
        assert.strictEqual((vetoed as Errors.HookVetoed).by, "com.example.hooks")
        assert.isTrue(Option.isNone(yield* storage.retrieve("test", "forbidden/1")))
      }).pipe(Effect.provide(node))
  )

  it.scopedLive(
    "a plugin requesting sensitive permissions without the operator's grant does not start and names each",
    () =>
      Effect.gen(function* () {
        const manager = yield* PluginManager
        const info = yield* manager.get("com.example.fs")
        assert.strictEqual(info.state, "failed")
        assert.include(info.error, "fs:write:/tmp/x")
        assert.include(info.error, "network:connect:example.com")
        const error = yield* Effect.flip(manager.start("com.example.fs"))
        assert.strictEqual(error._tag, "MissingGrants")
        assert.deepStrictEqual((error as Errors.MissingGrants).missing, [
          "fs:write:/tmp/x",
          "network:connect:example.com"
        ])
      }).pipe(Effect.provide(node))
  )

  it.scopedLive("the operator's grant lets the same plugin start", () =>
    Effect.gen(function* () {
      const manager = yield* PluginManager
      assert.strictEqual((yield* manager.get("com.example.fs")).state, "running")
    }).pipe(
      Effect.provide(
        NodeTest.layer({
          plugins: [fsPlugin],
          grants: { "com.example.fs": ["fs:write:/tmp", "network:connect:example.com"] }
        })
      )
    )
  )

  it.scopedLive("stopping a plugin runs its finalizers and ends its subscriptions and fibers", () =>
    Effect.gen(function* () {
      const manager = yield* PluginManager
      const bus = yield* EventBus
      yield* waitUntil(Effect.sync(() => lifecycleState.ticks > 0))
      yield* bus.publish({ type: "tick.a", source: "core" })
      yield* waitUntil(Effect.sync(() => lifecycleState.delivered === 1))

      const states = yield* bus.subscribe("plugin.*")
      const collected = yield* states.stream.pipe(Stream.take(2), Stream.runCollect, Effect.fork)
      yield* manager.stop("com.example.lifecycle")
      assert.isTrue(lifecycleState.finalized)
      assert.strictEqual((yield* manager.get("com.example.lifecycle")).state, "stopped")
      const transitions = Array.from(yield* Fiber.join(collected), (event) => event.type)
      assert.deepStrictEqual(transitions, ["plugin.stopping", "plugin.stopped"])

      const ticks = lifecycleState.ticks
      yield* bus.publish({ type: "tick.b", source: "core" })
      yield* Effect.sleep("20 millis")
      assert.strictEqual(lifecycleState.ticks, ticks, "the forked fiber was interrupted")
      assert.strictEqual(lifecycleState.delivered, 1, "the subscription ended")
    }).pipe(Effect.provide(node))
  )

  it.scopedLive("a bad config fails that plugin with the decode error and the node keeps running", () =>
    Effect.gen(function* () {
      const manager = yield* PluginManager
      const info = yield* manager.get("com.example.indexer")
      assert.strictEqual(info.state, "failed")
      assert.include(info.error, "prefix")
      assert.strictEqual((yield* manager.get("com.example.publisher")).state, "running")
    }).pipe(
      Effect.provide(
        NodeTest.layer({ plugins: [publisher, { definition: indexer, config: { prefix: 42 } }] })
      )
    )
  )
})
