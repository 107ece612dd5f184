/**
 * Storage routing, wired the way a node wires it: the base backend wrapped by
 * `StorageRouting.layerBackend`, `Storage` (hooks) on top, and the plugin
 * manager attaching storage plugins' backends to the shared table.
 */
import { StorageError } from "@blackhole/sdk/Errors"
import * as Hooks from "@blackhole/sdk/Hooks"
import * as Plugin from "@blackhole/sdk/Plugin"
import * as PluginConfig from "@blackhole/sdk/PluginConfig"
import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as EventBus from "../src/EventBus.js"
import * as HookRegistry from "../src/HookRegistry.js"
import * as PluginManager from "../src/PluginManager.js"
import * as ResourceLimiter from "../src/ResourceLimiter.js"
import * as ServiceRegistry from "../src/ServiceRegistry.js"
import * as Storage from "../src/Storage.js"
import * as StorageBackend from "../src/StorageBackend.js"
import * as StorageRouting from "../src/StorageRouting.js"

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const bytes = (text: string) => encoder.encode(text)
const text = (value: Uint8Array) => decoder.decode(value)

const storeId = "com.example.mapstore"

/**
 * A storage plugin over a Map the test can see (keys as the router qualifies them). Key `boom`
 * fails with a StorageFailure, key `die` dies, key `interrupted` is interrupted; `maxBytes` is the total it reports.
 */
const mapStore = (options: { readonly maxBytes?: number } = {}) => {
  const data = new Map<string, Uint8Array>()
  const definition = Plugin.storage({
    manifest: { id: storeId, name: "Map store", version: "1.0.0", type: "storage" },
    config: PluginConfig.none,
    program: Effect.succeed({
      storage: {
        store: (key: string, value: Uint8Array) =>
          key.endsWith("\u0000boom")
            ? Effect.fail(new Plugin.StorageFailure({ operation: "store", reason: "the disk said no" }))
            : key.endsWith("\u0000die")
              ? Effect.die(new Error("bug in the plugin"))
              : // What a subprocess plugin's proxy does when the plugin stops mid-call.
                key.endsWith("\u0000interrupted")
                ? Effect.interrupt
                : Effect.sync(() => void data.set(key, new Uint8Array(value))),
        retrieve: (key: string) => Effect.sync(() => data.get(key)),
        delete: (key: string) => Effect.sync(() => data.delete(key)),
        // Unsorted on purpose: the router sorts.
        list: (prefix: string) =>
          Effect.sync(() => [...data.keys()].filter((key) => key.startsWith(prefix)).reverse()),
        capacity: Effect.sync(() => ({
          usedBytes: [...data.values()].reduce((sum, value) => sum + value.byteLength, 0),
          totalBytes: options.maxBytes ?? null
        }))
      }
    })
  })
  return { definition, data }
}

/** A node's storage stack with `routes`, the base in memory (optionally bounded). */
const stack = (routes: StorageRouting.Routes, base: { readonly maxBytes?: number } = {}) => {
  const manager = Layer.unwrapEffect(
    Effect.map(StorageRouting.StorageRouting, (routing) =>
      PluginManager.layer({
        nodeInfo: { nodeId: "12D3KooWRouting", version: "0.1.0", environment: "test" },
        attachments: [StorageRouting.attachment(routing)]
      })
    )
  )
  return manager.pipe(
    Layer.provideMerge(ServiceRegistry.layer()),
    Layer.provideMerge(Storage.layer.pipe(Layer.provide(StorageRouting.layerBackend(routes)))),
    Layer.provideMerge(StorageRouting.layer),
    Layer.provideMerge(Layer.mergeAll(HookRegistry.layer(), EventBus.layer(), ResourceLimiter.layer)),
    Layer.provideMerge(Layer.effect(StorageBackend.StorageBackend, StorageBackend.makeMemory(base)))
  )
}

/** Registers and starts the map store in the current node. */
const startStore = (plugin: ReturnType<typeof mapStore>) =>
  Effect.gen(function* () {
    const manager = yield* PluginManager.PluginManager
    yield* manager.register(plugin.definition)
    yield* manager.start(storeId)
  })

const value = (namespace: string, key: string) =>
  Effect.flatMap(Storage.Storage, (storage) => storage.retrieve(namespace, key)).pipe(
    Effect.map((v) => Option.getOrUndefined(Option.map(v, text)))
  )

const baseValue = (namespace: string, key: string) =>
  Effect.flatMap(StorageBackend.StorageBackend, (base) => base.retrieve(namespace, key)).pipe(
    Effect.map((v) => Option.getOrUndefined(Option.map(v, text)))
  )

const put = (namespace: string, key: string, v: string): StorageBackend.WriteOp => ({
  _tag: "Put",
  namespace,
  key,
  value: bytes(v)
})

describe("StorageRouting", () => {
  it.scoped("sends a routed namespace to its running storage plugin and the rest to the base", () =>
    Effect.gen(function* () {
      const plugin = mapStore()
      yield* startStore(plugin)
      const storage = yield* Storage.Storage
      yield* storage.store("test", "media", "cat.png", bytes("meow"))
      yield* storage.store("test", "media", "dog.png", bytes("woof"))
      yield* storage.store("test", "users", "alice", bytes("Alice"))

      const { qualify } = StorageRouting
      assert.deepStrictEqual([...plugin.data.keys()].sort(), [
        qualify("media", "cat.png"),
        qualify("media", "dog.png")
      ])
      assert.isUndefined(yield* baseValue("media", "cat.png"))
      assert.strictEqual(yield* baseValue("users", "alice"), "Alice")
      assert.strictEqual(yield* value("media", "cat.png"), "meow")
      assert.isUndefined(yield* value("media", "nothing"))
      assert.deepStrictEqual(yield* storage.list("media", ""), ["cat.png", "dog.png"])
      assert.deepStrictEqual(yield* storage.list("media", "d"), ["dog.png"])
      assert.isTrue(yield* storage.delete("test", "media", "cat.png"))
      assert.isFalse(yield* storage.delete("test", "media", "cat.png"))
      assert.deepStrictEqual([...plugin.data.keys()], [qualify("media", "dog.png")])
      const routing = yield* StorageRouting.StorageRouting
      assert.deepStrictEqual(yield* routing.attached, [storeId])
    }).pipe(Effect.provide(stack({ media: storeId })))
  )

  it.scoped(
    "while the plugin is not running, its namespaces fail with a StorageError that says what to do",
    () =>
      Effect.gen(function* () {
        const plugin = mapStore()
        const storage = yield* Storage.Storage
        const manager = yield* PluginManager.PluginManager
        const routing = yield* StorageRouting.StorageRouting
        const before = yield* Effect.flip(storage.store("test", "media", "k", bytes("v")))
        assert.instanceOf(before, StorageError)
        assert.include(before.message, `stored by plugin ${storeId}, which is not running`)
        assert.include(before.message, `blackhole plugin start ${storeId}`)
        // Other namespaces are not affected.
        yield* storage.store("test", "users", "alice", bytes("Alice"))

        yield* startStore(plugin)
        yield* storage.store("test", "media", "k", bytes("v"))
        yield* manager.stop(storeId)
        assert.deepStrictEqual(yield* routing.attached, [])
        const after = yield* Effect.flip(storage.retrieve("media", "k"))
        assert.include(after.message, "which is not running")

        yield* manager.start(storeId)
        assert.strictEqual(yield* value("media", "k"), "v")
      }).pipe(Effect.provide(stack({ media: storeId })))
  )

  it.scoped(
    "a plugin's StorageFailure or defect reaches the caller as a StorageError naming the namespace",
    () =>
      Effect.gen(function* () {
        yield* startStore(mapStore())
        const storage = yield* Storage.Storage
        const failure = yield* Effect.flip(storage.store("test", "media", "boom", bytes("x")))
        assert.instanceOf(failure, StorageError)
        assert.strictEqual((failure as StorageError).operation, "store")
        assert.include(failure.message, `namespace "media" (plugin ${storeId}): the disk said no`)
        const defect = yield* Effect.flip(storage.store("test", "media", "die", bytes("x")))
        assert.include(defect.message, "bug in the plugin")
        const interrupted = yield* Effect.flip(storage.store("test", "media", "interrupted", bytes("x")))
        assert.include(interrupted.message, "the plugin stopped during the call")
      }).pipe(Effect.provide(stack({ media: storeId })))
  )

  it.scoped("storage hooks still run around writes to a routed namespace", () =>
    Effect.gen(function* () {
      const plugin = mapStore()
      yield* startStore(plugin)
      const hooks = yield* HookRegistry.HookRegistry
      yield* hooks.register("storage.before.write", "com.example.guard", (payload) => {
        const { key } = payload as { key: string }
        return key === "forbidden" ? Hooks.veto("not this key") : Effect.void
      })
      const storage = yield* Storage.Storage
      const vetoed = yield* Effect.flip(storage.store("test", "media", "forbidden", bytes("x")))
      assert.strictEqual(vetoed._tag, "HookVetoed")
      assert.strictEqual(plugin.data.size, 0)
    }).pipe(Effect.provide(stack({ media: storeId })))
  )

  it.scoped("several namespaces in one plugin keep their keys apart", () =>
    Effect.gen(function* () {
      yield* startStore(mapStore())
      const storage = yield* Storage.Storage
      yield* storage.store("test", "media", "k", bytes("in media"))
      yield* storage.store("test", "media2", "k", bytes("in media2"))
      yield* storage.store("test", "media2", "k2", bytes("also in media2"))
      assert.strictEqual(yield* value("media", "k"), "in media")
      assert.strictEqual(yield* value("media2", "k"), "in media2")
      assert.deepStrictEqual(yield* storage.list("media", ""), ["k"])
      assert.deepStrictEqual(yield* storage.list("media2", "k"), ["k", "k2"])
      assert.isTrue(yield* storage.delete("test", "media", "k"))
      assert.strictEqual(yield* value("media2", "k"), "in media2")
    }).pipe(Effect.provide(stack({ media: storeId, media2: storeId })))
  )

  it.scoped("a batch over routed and base namespaces applies every op", () =>
    Effect.gen(function* () {
      const plugin = mapStore()
      yield* startStore(plugin)
      const storage = yield* Storage.Storage
      yield* storage.batch("test", [
        put("media", "a", "1"),
        put("users", "alice", "Alice"),
        put("media", "b", "2"),
        { _tag: "Delete", namespace: "media", key: "a" },
        put("media", "a", "3")
      ])
      assert.strictEqual(yield* value("media", "a"), "3")
      assert.strictEqual(yield* value("media", "b"), "2")
      assert.strictEqual(yield* value("users", "alice"), "Alice")
    }).pipe(Effect.provide(stack({ media: storeId })))
  )

  it.scoped("a batch whose routed part fails puts the routed keys back and leaves the base untouched", () =>
    Effect.gen(function* () {
      const plugin = mapStore()
      yield* startStore(plugin)
      const storage = yield* Storage.Storage
      yield* storage.store("test", "media", "kept", bytes("old"))
      const error = yield* Effect.flip(
        storage.batch("test", [
          put("media", "kept", "new"),
          put("media", "created", "x"),
          put("users", "alice", "Alice"),
          put("media", "boom", "fails")
        ])
      )
      assert.include(error.message, "the disk said no")
      assert.deepStrictEqual(
        [...plugin.data.entries()].map(([k, v]) => [k, text(v)]),
        [[StorageRouting.qualify("media", "kept"), "old"]]
      )
      assert.isUndefined(yield* value("users", "alice"))
    }).pipe(Effect.provide(stack({ media: storeId })))
  )

  it.scoped("a batch whose base part fails puts the routed keys back", () =>
    Effect.gen(function* () {
      const plugin = mapStore()
      yield* startStore(plugin)
      const storage = yield* Storage.Storage
      yield* storage.store("test", "media", "kept", bytes("old"))
      // The base refuses writes beyond 64 bytes.
      const error = yield* Effect.flip(
        storage.batch("test", [put("media", "kept", "new"), put("users", "big", "x".repeat(100))])
      )
      assert.instanceOf(error, StorageError)
      assert.strictEqual(yield* value("media", "kept"), "old")
      assert.isUndefined(yield* value("users", "big"))
    }).pipe(Effect.provide(stack({ media: storeId }, { maxBytes: 64 })))
  )

  it.scoped("a snapshot merges routed namespaces into the base's (namespace, key) order", () =>
    Effect.gen(function* () {
      const plugin = mapStore()
      yield* startStore(plugin)
      const storage = yield* Storage.Storage
      const base = yield* StorageBackend.StorageBackend
      // Left in the base from before the namespace was routed: hidden, as it is to retrieve.
      yield* base.store("media", "stale", bytes("old"))
      for (const [namespace, key] of [
        ["a", "1"],
        ["c", "1"],
        ["media", "x"],
        ["media", "b"],
        ["m", "1"],
        ["z", "2"],
        ["z", "1"]
      ] as const) {
        yield* storage.store("test", namespace, key, bytes(`${namespace}/${key}`))
      }
      const all = yield* Stream.runCollect(storage.snapshot())
      assert.deepStrictEqual(
        Chunk.toReadonlyArray(all).map((entry) => `${entry.namespace}/${entry.key}=${text(entry.value)}`),
        ["a/1=a/1", "c/1=c/1", "m/1=m/1", "media/b=media/b", "media/x=media/x", "z/1=z/1", "z/2=z/2"]
      )
      const someNamespaces = yield* Stream.runCollect(storage.snapshot("m"))
      assert.deepStrictEqual(
        Chunk.toReadonlyArray(someNamespaces).map((entry) => `${entry.namespace}/${entry.key}`),
        ["m/1", "media/b", "media/x"]
      )
      // A routed namespace after every base namespace, and one with no base at all.
      yield* storage.store("test", "zz-routed", "k", bytes("v"))
      const last = yield* Stream.runCollect(storage.snapshot("zz"))
      assert.deepStrictEqual(
        Chunk.toReadonlyArray(last).map((entry) => `${entry.namespace}/${entry.key}`),
        ["zz-routed/k"]
      )
    }).pipe(Effect.provide(stack({ media: storeId, "zz-routed": storeId })))
  )

  it.scoped("capacity adds the running plugins' usage to the base's", () =>
    Effect.gen(function* () {
      const storage = yield* Storage.Storage
      yield* storage.store("test", "users", "alice", bytes("Alice"))
      const alone = yield* storage.capacity
      yield* startStore(mapStore({ maxBytes: 1000 }))
      yield* storage.store("test", "media", "k", bytes("1234567890"))
      const both = yield* storage.capacity
      assert.strictEqual(both.usedBytes, alone.usedBytes + 10)
      assert.strictEqual(both.totalBytes, 5000 + 1000)
    }).pipe(Effect.provide(stack({ media: storeId }, { maxBytes: 5000 })))
  )

  it.effect("invalid routes are refused with every problem", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(StorageRouting.validate({ media: storeId }), [])
      const problems = StorageRouting.validate({ "": storeId, media: "Not An Id" })
      assert.strictEqual(problems.length, 2)
      const exit = yield* Effect.exit(Effect.provide(Storage.Storage, stack({ media: "Not An Id" })))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) assert.include(String(exit.cause), "is not a plugin id")
    })
  )

  it.effect("no routes: the base backend itself", () =>
    Effect.gen(function* () {
      const base = yield* StorageBackend.makeMemory()
      const routing = yield* StorageRouting.make
      assert.strictEqual(StorageRouting.route(base, {}, routing), base)
    })
  )
})
