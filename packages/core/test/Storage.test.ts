import * as CoreServices from "@blackhole/sdk/CoreServices"
import * as Errors from "@blackhole/sdk/Errors"
import * as Hooks from "@blackhole/sdk/Hooks"
import * as Plugin from "@blackhole/sdk/Plugin"
import * as PluginConfig from "@blackhole/sdk/PluginConfig"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as HookRegistry from "../src/HookRegistry.js"
import { Identity } from "../src/Identity.js"
import * as NodeTest from "../src/NodeTest.js"
import * as Principal from "../src/Principal.js"
import { ServiceRegistry } from "../src/ServiceRegistry.js"
import * as Storage from "../src/Storage.js"

const bytes = (...values: ReadonlyArray<number>) => new Uint8Array(values)

const TestLayer = Storage.layerMemory.pipe(Layer.provideMerge(HookRegistry.layer()))

type Seen = {
  readonly hook: string
  readonly namespace: string
  readonly key: string
  readonly principal: string
}

/** Records every storage hook call, in order, as `{ hook, namespace, key, principal }`. */
const recordAll = Effect.gen(function* () {
  const hooks = yield* HookRegistry.HookRegistry
  const seen: Array<Seen> = []
  for (const hook of [
    "storage.before.write",
    "storage.after.write",
    "storage.before.delete",
    "storage.after.delete"
  ]) {
    yield* hooks.register(hook, "com.example.recorder", (payload) =>
      Effect.sync(() => {
        const { namespace, key, principal } = payload as typeof Hooks.StorageDelete.Type
        seen.push({ hook, namespace, key, principal })
      })
    )
  }
  return seen
})

/** A before hook of `owner` vetoing every key under `locked/`. */
const vetoLocked = (hook: "storage.before.write" | "storage.before.delete") =>
  Effect.flatMap(HookRegistry.HookRegistry, (hooks) =>
    hooks.register(hook, "com.example.guard", (payload) =>
      (payload as typeof Hooks.StorageDelete.Type).key.startsWith("locked/")
        ? Hooks.veto("locked keys are read-only")
        : Effect.void
    )
  )

describe("Storage with hooks", () => {
  it.scoped("a before.write veto prevents the write; after hooks see only the writes that happened", () =>
    Effect.gen(function* () {
      const storage = yield* Storage.Storage
      yield* vetoLocked("storage.before.write")
      const seen = yield* recordAll

      const error = yield* Effect.flip(storage.store("com.example.writer", "ns", "locked/a", bytes(1)))
      assert.instanceOf(error, Errors.HookVetoed)
      assert.strictEqual((error as Errors.HookVetoed).by, "com.example.guard")
      assert.strictEqual((error as Errors.HookVetoed).hook, "storage.before.write")
      assert.isTrue(Option.isNone(yield* storage.retrieve("ns", "locked/a")))
      // The guard runs first (registered first, same priority) and stops the chain.
      assert.deepStrictEqual(seen, [])

      yield* storage.store("com.example.writer", "ns", "open/a", bytes(2))
      assert.deepStrictEqual(Option.getOrThrow(yield* storage.retrieve("ns", "open/a")), bytes(2))
      assert.deepStrictEqual(seen, [
        { hook: "storage.before.write", namespace: "ns", key: "open/a", principal: "com.example.writer" },
        { hook: "storage.after.write", namespace: "ns", key: "open/a", principal: "com.example.writer" }
      ])
    }).pipe(Effect.provide(TestLayer))
  )

  it.scoped("after.write hooks receive the value written", () =>
    Effect.gen(function* () {
      const storage = yield* Storage.Storage
      const hooks = yield* HookRegistry.HookRegistry
      const values: Array<Uint8Array> = []
      yield* hooks.register("storage.after.write", "com.example.recorder", (payload) =>
        Effect.sync(() => {
          values.push((payload as typeof Hooks.StorageWrite.Type).value)
        })
      )
      yield* storage.store("core", "ns", "k", bytes(7, 8, 9))
      assert.deepStrictEqual(values, [bytes(7, 8, 9)])
    }).pipe(Effect.provide(TestLayer))
  )

  it.scoped("a before.delete veto keeps the value; an allowed delete runs the after.delete hooks", () =>
    Effect.gen(function* () {
      const storage = yield* Storage.Storage
      yield* storage.store("core", "ns", "locked/a", bytes(1))
      yield* storage.store("core", "ns", "open/a", bytes(2))
      yield* vetoLocked("storage.before.delete")
      const seen = yield* recordAll

      const error = yield* Effect.flip(storage.delete("com.example.deleter", "ns", "locked/a"))
      assert.instanceOf(error, Errors.HookVetoed)
      assert.strictEqual((error as Errors.HookVetoed).hook, "storage.before.delete")
      assert.isTrue(Option.isSome(yield* storage.retrieve("ns", "locked/a")))
      assert.deepStrictEqual(seen, [])

      assert.isTrue(yield* storage.delete("com.example.deleter", "ns", "open/a"))
      assert.isTrue(Option.isNone(yield* storage.retrieve("ns", "open/a")))
      assert.deepStrictEqual(seen, [
        { hook: "storage.before.delete", namespace: "ns", key: "open/a", principal: "com.example.deleter" },
        { hook: "storage.after.delete", namespace: "ns", key: "open/a", principal: "com.example.deleter" }
      ])
      // A write veto does not apply to deletes, nor a delete veto to writes.
      yield* storage.store("core", "ns", "locked/a", bytes(3))
      assert.deepStrictEqual(Option.getOrThrow(yield* storage.retrieve("ns", "locked/a")), bytes(3))
    }).pipe(Effect.provide(TestLayer))
  )

  it.scoped("a veto on any op of a batch aborts the whole batch", () =>
    Effect.gen(function* () {
      const storage = yield* Storage.Storage
      yield* storage.store("core", "ns", "old", bytes(9))
      yield* vetoLocked("storage.before.write")
      const seen = yield* recordAll

      const error = yield* Effect.flip(
        storage.batch("com.example.batcher", [
          { _tag: "Put", namespace: "ns", key: "first", value: bytes(1) },
          { _tag: "Delete", namespace: "ns", key: "old" },
          { _tag: "Put", namespace: "ns", key: "locked/x", value: bytes(2) },
          { _tag: "Put", namespace: "ns", key: "last", value: bytes(3) }
        ])
      )
      assert.instanceOf(error, Errors.HookVetoed)
      assert.deepStrictEqual(yield* storage.list("ns", ""), ["old"])
      assert.deepStrictEqual(Option.getOrThrow(yield* storage.retrieve("ns", "old")), bytes(9))
      assert.isFalse(
        seen.some((s) => s.hook.startsWith("storage.after")),
        "no after hook runs for an aborted batch"
      )
    }).pipe(Effect.provide(TestLayer))
  )

  it.scoped("an allowed batch applies every op and its hooks see each op with the principal", () =>
    Effect.gen(function* () {
      const storage = yield* Storage.Storage
      yield* storage.store("core", "ns", "old", bytes(9))
      const seen = yield* recordAll
      yield* storage.batch("com.example.batcher", [
        { _tag: "Put", namespace: "ns", key: "a", value: bytes(1) },
        { _tag: "Delete", namespace: "ns", key: "old" }
      ])
      assert.deepStrictEqual(yield* storage.list("ns", ""), ["a"])
      const who = "com.example.batcher"
      assert.deepStrictEqual(seen, [
        { hook: "storage.before.write", namespace: "ns", key: "a", principal: who },
        { hook: "storage.before.delete", namespace: "ns", key: "old", principal: who },
        { hook: "storage.after.write", namespace: "ns", key: "a", principal: who },
        { hook: "storage.after.delete", namespace: "ns", key: "old", principal: who }
      ])
    }).pipe(Effect.provide(TestLayer))
  )
})

const listed = Plugin.integration({
  manifest: { id: "com.example.listed", name: "Listed", version: "2.3.4", type: "integration" },
  config: PluginConfig.none,
  program: Effect.succeed({ integration: { kind: "none", sync: Effect.void } })
})

const node = NodeTest.layer({ plugins: [listed] })

describe("core services on the mesh", () => {
  it.scopedLive(
    "the operator stores, retrieves, lists, snapshots and deletes through CoreServices.Storage",
    () =>
      Effect.gen(function* () {
        const registry = yield* ServiceRegistry
        const storage = registry.client(Principal.operator, CoreServices.Storage)
        yield* storage.store({ namespace: "backup/a", key: "k1", value: bytes(1, 2) })
        yield* storage.store({ namespace: "backup/a", key: "k2", value: bytes(3) })
        yield* storage.store({ namespace: "backup/b", key: "k1", value: bytes(4) })
        yield* storage.store({ namespace: "other", key: "k1", value: bytes(5) })

        assert.deepStrictEqual(yield* storage.retrieve({ namespace: "backup/a", key: "k1" }), bytes(1, 2))
        assert.isNull(yield* storage.retrieve({ namespace: "backup/a", key: "missing" }))
        assert.deepStrictEqual(yield* storage.list({ namespace: "backup/a", prefix: "k" }), ["k1", "k2"])
        assert.deepStrictEqual(yield* storage.list({ namespace: "backup/a", prefix: "k2" }), ["k2"])

        const snapshot = yield* storage.snapshot({ namespacePrefix: "backup/" })
        assert.deepStrictEqual(
          snapshot.map((entry) => [entry.namespace, entry.key, Array.from(entry.value)]),
          [
            ["backup/a", "k1", [1, 2]],
            ["backup/a", "k2", [3]],
            ["backup/b", "k1", [4]]
          ]
        )

        assert.isTrue(yield* storage.delete({ namespace: "backup/a", key: "k2" }))
        assert.isFalse(yield* storage.delete({ namespace: "backup/a", key: "k2" }))
        yield* storage.batch({
          ops: [
            { _tag: "Put", namespace: "backup/a", key: "k3", value: bytes(6) },
            { _tag: "Delete", namespace: "backup/a", key: "k1" }
          ]
        })
        assert.deepStrictEqual(yield* storage.list({ namespace: "backup/a", prefix: "" }), ["k3"])

        // It is the node's storage: the same entries are visible to the Storage service directly.
        const direct = yield* Storage.Storage
        assert.deepStrictEqual(Option.getOrThrow(yield* direct.retrieve("backup/a", "k3")), bytes(6))
      }).pipe(Effect.provide(node))
  )

  it.scopedLive("writes through the storage service pass the storage hooks, which may veto them", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      yield* vetoLocked("storage.before.write")
      const storage = registry.client(Principal.operator, CoreServices.Storage)
      const error = yield* Effect.flip(storage.store({ namespace: "ns", key: "locked/a", value: bytes(1) }))
      assert.instanceOf(error, Errors.HookVetoed)
      assert.strictEqual((error as Errors.HookVetoed).by, "com.example.guard")
      assert.isNull(yield* storage.retrieve({ namespace: "ns", key: "locked/a" }))
    }).pipe(Effect.provide(node))
  )

  it.scopedLive("storage hooks see the caller of the storage service as the principal", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      const seen = yield* recordAll
      yield* registry
        .client(Principal.operator, CoreServices.Storage)
        .store({ namespace: "ns", key: "k", value: bytes(1) })
      assert.deepStrictEqual(
        seen.map((s) => s.principal),
        ["operator", "operator"]
      )
    }).pipe(Effect.provide(node))
  )

  it.scopedLive("CoreServices.Identity.info returns the node id and public key", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      const identity = yield* Identity
      const info = yield* registry.client(Principal.operator, CoreServices.Identity).info()
      assert.strictEqual(info.nodeId, identity.nodeId)
      assert.match(info.nodeId, /^12D3KooW/)
      assert.deepStrictEqual(info.publicKey, identity.publicKey)
    }).pipe(Effect.provide(node))
  )

  it.scopedLive("CoreServices.Node reports the node and lists its plugins", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      const identity = yield* Identity
      const nodeService = registry.client(Principal.operator, CoreServices.Node)
      const info = yield* nodeService.info()
      assert.strictEqual(info.nodeId, identity.nodeId)
      assert.strictEqual(info.environment, "test")
      const plugins = yield* nodeService.plugins()
      assert.deepStrictEqual(plugins, [
        {
          id: "com.example.listed",
          name: "Listed",
          version: "2.3.4",
          type: "integration",
          loader: "inprocess",
          state: "running",
          restarts: 0
        }
      ])
    }).pipe(Effect.provide(node))
  )

  it.scopedLive("a plugin may call read methods of core services but not write ones without a grant", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      const reader = Principal.plugin("com.example.reader", ["service:storage:read", "service:node:read"])
      assert.strictEqual((yield* registry.client(reader, CoreServices.Node).plugins()).length, 1)
      assert.isNull(
        yield* registry.client(reader, CoreServices.Storage).retrieve({ namespace: "ns", key: "k" })
      )
      const denied = yield* Effect.flip(
        registry.client(reader, CoreServices.Storage).store({ namespace: "ns", key: "k", value: bytes(1) })
      )
      assert.instanceOf(denied, Errors.PermissionDenied)
      assert.strictEqual((denied as Errors.PermissionDenied).permission, "service:storage:store")
    }).pipe(Effect.provide(node))
  )
})
