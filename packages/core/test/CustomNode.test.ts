/**
 * The README's examples, compiled and run: the plugin from "Write a plugin" and the
 * composition from "Compose a custom node". If this breaks, the README is wrong.
 */

import { Events, Plugin, PluginConfig, PluginStorage, ServiceContract } from "@blackhole/sdk"
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option, Schema } from "effect"
import {
  BlackholeNode,
  EventBus,
  Identity,
  Principal,
  ServiceRegistry,
  StorageBackend
} from "../src/index.js"

// --- README: Write a plugin
const Counter = ServiceContract.make(
  "counter",
  RpcGroup.make(ServiceContract.read(Rpc.make("count", { success: Schema.Number })))
)

const Config = PluginConfig.make(
  Schema.Struct({ pattern: Schema.optionalWith(Schema.String, { default: () => "content.*" }) })
)
const Count = Schema.Number

const counter = Plugin.service({
  manifest: {
    id: "com.example.counter",
    name: "Counter",
    version: "1.0.0",
    type: "service",
    permissions: ["events:subscribe:content.*", "storage:read", "storage:write"],
    services: ["counter"]
  },
  config: Config,
  program: Effect.gen(function* () {
    const { pattern } = yield* Config
    const storage = yield* PluginStorage.PluginStorage
    const load = PluginStorage.retrieveJson("count", Count).pipe(
      Effect.map(Option.getOrElse(() => 0)),
      Effect.provideService(PluginStorage.PluginStorage, storage)
    )
    // Runs until the plugin stops: the subscription lives in the plugin's Scope.
    yield* Events.on(pattern, () =>
      Effect.flatMap(load, (n) => PluginStorage.storeJson("count", Count, n + 1))
    )
    return { services: [ServiceContract.implement(Counter, { count: () => Effect.orDie(load) })] }
  })
})

// --- README: Compose a custom node
const Clock = ServiceContract.make(
  "clock",
  RpcGroup.make(ServiceContract.read(Rpc.make("now", { success: Schema.Number })))
)
const ClockService = Layer.scopedDiscard(
  Effect.flatMap(ServiceRegistry.ServiceRegistry, (mesh) =>
    mesh.register(
      Clock,
      ServiceContract.toDispatch(
        ServiceContract.implement(Clock, { now: () => Effect.sync(() => Date.now()) }),
        "core"
      ),
      "core"
    )
  )
)

const Node = BlackholeNode.layerWith({
  plugins: [{ definition: counter, config: { pattern: "content.*" } }] // compiled in
}).pipe(
  Layer.provideMerge(StorageBackend.layerMemory), // swap SQLite for memory
  Layer.provideMerge(Identity.layerMemory()) // an ephemeral identity
)

describe("the README's examples", () => {
  it.scopedLive("a custom node with an extra service and a compiled-in plugin", () =>
    Effect.gen(function* () {
      const mesh = yield* ServiceRegistry.ServiceRegistry
      const bus = yield* EventBus.EventBus
      const now = yield* mesh.client(Principal.operator, Clock).now()
      assert.isAbove(now, 0)
      yield* bus.publish({ type: "content.created", source: "core", data: {} })
      const count = mesh.client(Principal.operator, Counter)
      for (let i = 0; i < 500 && (yield* count.count()) < 1; i++) yield* Effect.sleep("2 millis")
      assert.strictEqual(yield* count.count(), 1)
    }).pipe(Effect.provide(ClockService.pipe(Layer.provideMerge(Node))))
  )
})
