import * as CoreServices from "@blackhole/sdk/CoreServices"
import * as Errors from "@blackhole/sdk/Errors"
import * as Events from "@blackhole/sdk/Events"
import * as Plugin from "@blackhole/sdk/Plugin"
import * as PluginConfig from "@blackhole/sdk/PluginConfig"
import type { PluginManifestEncoded } from "@blackhole/sdk/PluginManifest"
import * as PluginStorage from "@blackhole/sdk/PluginStorage"
import type { ResourceLimits } from "@blackhole/sdk/ResourceLimits"
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
import * as Services from "@blackhole/sdk/Services"
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import { droppedTotal, EventBus } from "../src/EventBus.js"
import { HookRegistry } from "../src/HookRegistry.js"
import { Identity } from "../src/Identity.js"
import * as NodeTest from "../src/NodeTest.js"
import { PluginManager } from "../src/PluginManager.js"
import * as Principal from "../src/Principal.js"
import * as ResourceLimiter from "../src/ResourceLimiter.js"
import * as Sandbox from "../src/Sandbox.js"
import { ServiceRegistry } from "../src/ServiceRegistry.js"
import { Storage } from "../src/Storage.js"

const limits = (overrides: Partial<ResourceLimits>): ResourceLimits => ({
  maxMemoryBytes: undefined,
  maxConcurrency: undefined,
  rateLimit: undefined,
  maxSockets: undefined,
  ...overrides
})

/** Polls `check` without sleeping: for tests under the TestClock, where other fibers only need turns. */
const settle = <E, R>(check: Effect.Effect<boolean, E, R>) =>
  Effect.gen(function* () {
    for (let i = 0; i < 1000; i++) {
      if (yield* check) return
      yield* Effect.yieldNow()
    }
    return yield* Effect.dieMessage("condition not reached")
  })

/** Polls `check` with short real sleeps (live tests), bounded. */
const waitUntil = <E, R>(check: Effect.Effect<boolean, E, R>) =>
  Effect.gen(function* () {
    for (let i = 0; i < 1000; i++) {
      if (yield* check) return
      yield* Effect.sleep("2 millis")
    }
    return yield* Effect.dieMessage("condition not reached")
  })

/** Gives every other runnable fiber many turns, so a call that could start would have started. */
const letOthersRun = Effect.gen(function* () {
  for (let i = 0; i < 200; i++) yield* Effect.yieldNow()
  yield* Effect.sleep("10 millis")
})

describe("ResourceLimiter", () => {
  it.scoped(
    "memory: reservations within the limit succeed, over it fail, and are returned when the Scope closes",
    () =>
      Effect.gen(function* () {
        const limiter = yield* ResourceLimiter.ResourceLimiter
        const quota = yield* limiter.make("com.example.mem", limits({ maxMemoryBytes: 1000 }))

        const first = yield* Scope.make()
        yield* quota.reserveMemory(600).pipe(Scope.extend(first))
        assert.strictEqual((yield* quota.usage).memoryBytes, 600)

        const error = yield* Effect.flip(Effect.scoped(quota.reserveMemory(401)))
        assert.instanceOf(error, Errors.QuotaExceeded)
        assert.strictEqual(error.resource, "memory")
        assert.strictEqual(error.principal, "com.example.mem")
        assert.strictEqual(error.limit, 1000)
        assert.strictEqual(error.requested, 1001)
        // A refused reservation holds nothing.
        assert.strictEqual((yield* quota.usage).memoryBytes, 600)

        // Up to the limit exactly is fine.
        yield* Effect.scoped(quota.reserveMemory(400))
        assert.strictEqual((yield* quota.usage).memoryBytes, 600)

        yield* Scope.close(first, Exit.void)
        assert.strictEqual((yield* quota.usage).memoryBytes, 0)
        yield* Effect.scoped(quota.reserveMemory(1000))
      }).pipe(Effect.provide(ResourceLimiter.layer))
  )

  it.scoped("memory: tryReserveMemory refuses over the limit and releaseMemory gives it back", () =>
    Effect.gen(function* () {
      const limiter = yield* ResourceLimiter.ResourceLimiter
      const quota = yield* limiter.make("com.example.try", limits({ maxMemoryBytes: 100 }))
      assert.isTrue(quota.tryReserveMemory(60))
      assert.isFalse(quota.tryReserveMemory(41))
      assert.isTrue(quota.tryReserveMemory(40))
      assert.isFalse(quota.tryReserveMemory(1))
      quota.releaseMemory(60)
      assert.isTrue(quota.tryReserveMemory(60))
      assert.strictEqual((yield* quota.usage).memoryBytes, 100)

      const unlimited = yield* limiter.make("com.example.free", limits({}))
      assert.isTrue(unlimited.tryReserveMemory(10 * 1024 ** 3))
      yield* Effect.scoped(unlimited.reserveMemory(10 * 1024 ** 3))
    }).pipe(Effect.provide(ResourceLimiter.layer))
  )

  it.scoped(
    "rate limit: outbound calls beyond the limit fail fast with RateLimited until the window passes",
    () =>
      Effect.gen(function* () {
        const limiter = yield* ResourceLimiter.ResourceLimiter
        const quota = yield* limiter.make(
          "com.example.rate",
          limits({ rateLimit: { limit: 3, windowMillis: 1000, text: "3/s" } })
        )
        let ran = 0
        const call = Effect.sync(() => {
          ran += 1
        })
        for (let i = 0; i < 3; i++) yield* quota.outbound(call)
        const error = yield* Effect.flip(quota.outbound(call))
        assert.instanceOf(error, Errors.RateLimited)
        assert.strictEqual((error as Errors.RateLimited).principal, "com.example.rate")
        assert.strictEqual((error as Errors.RateLimited).limit, "3/s")
        assert.isAbove((error as Errors.RateLimited).retryAfterMillis, 0)
        assert.strictEqual(ran, 3, "a rate-limited call does not run")

        // Inbound calls are not rate limited.
        yield* quota.inbound(call)
        assert.strictEqual(ran, 4)

        yield* TestClock.adjust("1 second")
        yield* quota.outbound(call)
        assert.strictEqual(ran, 5)
      }).pipe(Effect.provide(ResourceLimiter.layer))
  )

  it.scoped("concurrency: at most maxConcurrency inbound calls run at once, the rest wait", () =>
    Effect.gen(function* () {
      const limiter = yield* ResourceLimiter.ResourceLimiter
      const quota = yield* limiter.make("com.example.busy", limits({ maxConcurrency: 2 }))
      const gate = yield* Deferred.make<void>()
      let started = 0
      const call = Effect.zipRight(
        Effect.sync(() => {
          started += 1
        }),
        Deferred.await(gate)
      )
      const fibers = yield* Effect.forEach([1, 2, 3, 4], () => Effect.fork(quota.inbound(call)))
      yield* settle(Effect.sync(() => started === 2))
      for (let i = 0; i < 200; i++) yield* Effect.yieldNow()
      assert.strictEqual(started, 2)
      assert.strictEqual((yield* quota.usage).inbound, 2)

      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.joinAll(fibers)
      assert.strictEqual(started, 4)
      assert.strictEqual((yield* quota.usage).inbound, 0)
    }).pipe(Effect.provide(ResourceLimiter.layer))
  )

  it.scoped(
    "concurrency: a nested inbound → outbound call with a limit of 1 completes (one semaphore per direction)",
    () =>
      Effect.gen(function* () {
        const limiter = yield* ResourceLimiter.ResourceLimiter
        const quota = yield* limiter.make("com.example.nested", limits({ maxConcurrency: 1 }))
        const usage = yield* quota.inbound(quota.outbound(quota.usage))
        assert.deepStrictEqual(usage, { memoryBytes: 0, inbound: 1, outbound: 1 })
      }).pipe(Effect.provide(ResourceLimiter.layer))
  )
})

// --- plugins exercising their quotas through the node

/** A plugin's limits, exercised over the mesh. */
const Limits = ServiceContract.make(
  "limits",
  RpcGroup.make(
    ServiceContract.write(
      Rpc.make("store", {
        payload: { key: Schema.String, size: Schema.Number },
        error: Schema.Union(
          Errors.PermissionDenied,
          Errors.RateLimited,
          Errors.QuotaExceeded,
          Errors.HookVetoed,
          Errors.StorageError
        )
      })
    ),
    ServiceContract.read(Rpc.make("ping", { success: Schema.String })),
    ServiceContract.read(Rpc.make("work", {})),
    ServiceContract.read(Rpc.make("nested", { success: Schema.String, error: Errors.MeshError }))
  )
)

/** Counts concurrent executions of `work`; every execution waits for `gate`. */
interface Tracker {
  readonly gate: Deferred.Deferred<void>
  current: number
  max: number
  entered: number
}

const makeTracker = Effect.map(
  Deferred.make<void>(),
  (gate): Tracker => ({ gate, current: 0, max: 0, entered: 0 })
)

const limitsPlugin = (
  id: string,
  resources: NonNullable<PluginManifestEncoded["resources"]>,
  tracker?: Tracker
) =>
  Plugin.service({
    manifest: {
      id,
      name: id,
      version: "1.0.0",
      type: "service",
      permissions: ["storage:read", "storage:write", "service:node:read"],
      services: ["limits"],
      resources
    },
    config: PluginConfig.none,
    program: Effect.gen(function* () {
      const storage = yield* PluginStorage.PluginStorage
      const services = yield* Services.Services
      return {
        services: [
          ServiceContract.implement(Limits, {
            store: ({ key, size }) => storage.store(key, new Uint8Array(size)),
            ping: () => Effect.succeed("pong"),
            work: () =>
              tracker === undefined
                ? Effect.void
                : Effect.acquireUseRelease(
                    Effect.sync(() => {
                      tracker.current += 1
                      tracker.entered += 1
                      tracker.max = Math.max(tracker.max, tracker.current)
                    }),
                    () => Deferred.await(tracker.gate),
                    () =>
                      Effect.sync(() => {
                        tracker.current -= 1
                      })
                  ),
            // A call from the host into the plugin that itself calls the host.
            nested: () =>
              services
                .client(CoreServices.Node)
                .info()
                .pipe(Effect.map((info) => info.nodeId))
          })
        ]
      }
    })
  })

/** Subscribes to `load.*` and handles one event at a time, each waiting for `gate`. */
const slowSubscriber = (id: string, gate: Deferred.Deferred<void>, received: Array<string>) =>
  Plugin.integration({
    manifest: {
      id,
      name: id,
      version: "1.0.0",
      type: "integration",
      permissions: ["events:subscribe:load.*"],
      resources: { maxMemory: "1KB" }
    },
    config: PluginConfig.none,
    program: Effect.gen(function* () {
      yield* Events.on("load.*", (event) =>
        Effect.zipRight(
          Effect.sync(() => {
            received.push(event.type)
          }),
          Deferred.await(gate)
        )
      )
      return { integration: { kind: "slow", sync: Effect.void } }
    })
  })

const quotaDrops = (subscriber: string) =>
  Metric.value(Metric.tagged(Metric.tagged(droppedTotal, "subscriber", subscriber), "reason", "quota")).pipe(
    Effect.map((state) => state.count)
  )

// Fail a deadlocked call in seconds, not at the test timeout.
const mesh = { callTimeoutMillis: 5000 }

describe("resource limits of a plugin", () => {
  it.scopedLive(
    "maxMemory: a value over the quota is refused with QuotaExceeded, a small one is stored",
    () =>
      Effect.gen(function* () {
        const client = yield* registryClient()
        const error = yield* Effect.flip(client.store({ key: "big", size: 2048 }))
        assert.instanceOf(error, Errors.QuotaExceeded)
        const quota = error as Errors.QuotaExceeded
        assert.strictEqual(quota.resource, "memory")
        assert.strictEqual(quota.principal, "com.example.mem")
        assert.strictEqual(quota.limit, 1024)

        yield* client.store({ key: "small", size: 100 })
        const storage = yield* Storage
        const namespace = Sandbox.namespaceOf("com.example.mem")
        assert.isTrue(Option.isNone(yield* storage.retrieve(namespace, "big")))
        assert.strictEqual(Option.getOrThrow(yield* storage.retrieve(namespace, "small")).byteLength, 100)
        // Memory is returned once a write is acknowledged: many writes below the quota all pass.
        for (let i = 0; i < 5; i++) yield* client.store({ key: `again/${i}`, size: 1000 })
      }).pipe(
        Effect.provide(NodeTest.layer({ plugins: [limitsPlugin("com.example.mem", { maxMemory: "1KB" })] }))
      )
  )

  it.scopedLive("maxMemory: values in flight count against the quota until their write is acknowledged", () =>
    Effect.gen(function* () {
      const client = yield* registryClient()
      const hooks = yield* HookRegistry
      const release = yield* Deferred.make<void>()
      let blocked = false
      // Holds the write of "slow" in the host until the test lets it go.
      yield* hooks.register(
        "storage.before.write",
        "core",
        (payload) =>
          (payload as { readonly key: string }).key === "slow"
            ? Effect.zipRight(
                Effect.sync(() => {
                  blocked = true
                }),
                Deferred.await(release)
              )
            : Effect.void,
        { timeoutMillis: 10_000 }
      )
      const slow = yield* Effect.fork(client.store({ key: "slow", size: 600 }))
      yield* waitUntil(Effect.sync(() => blocked))

      const error = yield* Effect.flip(client.store({ key: "second", size: 600 }))
      assert.instanceOf(error, Errors.QuotaExceeded)
      assert.strictEqual((error as Errors.QuotaExceeded).requested, 1200)
      yield* client.store({ key: "fits", size: 400 })

      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(slow)
      yield* client.store({ key: "second", size: 600 })
      yield* client.store({ key: "whole", size: 1024 })
    }).pipe(
      Effect.provide(NodeTest.layer({ plugins: [limitsPlugin("com.example.mem", { maxMemory: "1KB" })] }))
    )
  )

  it.scopedLive(
    "maxMemory: events queued for a blocked subscriber beyond its quota are dropped and counted",
    () =>
      Effect.gen(function* () {
        const id = "com.example.slow"
        const gate = yield* Deferred.make<void>()
        const received: Array<string> = []
        yield* Effect.gen(function* () {
          const bus = yield* EventBus
          yield* bus.publish({ type: "load.first", source: "core", data: "x" })
          // The handler has the first event and is blocked: everything else queues in the host.
          yield* waitUntil(Effect.sync(() => received.length === 1))

          const before = yield* bus.stats
          const metricBefore = yield* quotaDrops(id)
          const payload = "a".repeat(400) // 402 bytes as JSON: two fit in 1 KiB, a third does not
          for (let i = 0; i < 10; i++)
            yield* bus.publish({ type: `load.n${i}`, source: "core", data: payload })
          yield* bus.publish({ type: "load.huge", source: "core", data: "b".repeat(2048) })
          const after = yield* bus.stats
          assert.strictEqual(after.published - before.published, 11)
          assert.strictEqual(after.dropped - before.dropped, 9)
          assert.strictEqual((yield* quotaDrops(id)) - metricBefore, 9)

          yield* Deferred.succeed(gate, undefined)
          yield* waitUntil(Effect.sync(() => received.length === 3))
          // The quota was returned as events were delivered: the subscriber receives again.
          yield* bus.publish({ type: "load.later", source: "core", data: payload })
          yield* waitUntil(Effect.sync(() => received.length === 4))
          assert.deepStrictEqual(received, ["load.first", "load.n0", "load.n1", "load.later"])
          assert.strictEqual((yield* bus.stats).dropped - before.dropped, 9)
        }).pipe(Effect.provide(NodeTest.layer({ plugins: [slowSubscriber(id, gate, received)] })))
      })
  )

  it.scopedLive(
    "rateLimit 5/min: the 6th plugin→host call fails with RateLimited; inbound calls still work",
    () =>
      Effect.gen(function* () {
        const client = yield* registryClient("com.example.rated")
        for (let i = 0; i < 5; i++) yield* client.store({ key: `k${i}`, size: 1 })
        const error = yield* Effect.flip(client.store({ key: "k5", size: 1 }))
        assert.instanceOf(error, Errors.RateLimited)
        const limited = error as Errors.RateLimited
        assert.strictEqual(limited.principal, "com.example.rated")
        assert.strictEqual(limited.limit, "5/min")
        assert.isAbove(limited.retryAfterMillis, 0)
        const storage = yield* Storage
        assert.deepStrictEqual(yield* storage.list(Sandbox.namespaceOf("com.example.rated"), ""), [
          "k0",
          "k1",
          "k2",
          "k3",
          "k4"
        ])
        assert.strictEqual(yield* client.ping(), "pong")
      }).pipe(
        Effect.provide(
          NodeTest.layer({ plugins: [limitsPlugin("com.example.rated", { rateLimit: "5/min" })] })
        )
      )
  )

  it.scopedLive("maxGoroutines 2: at most 2 inbound calls run in the plugin at once", () =>
    Effect.gen(function* () {
      const tracker = yield* makeTracker
      yield* Effect.gen(function* () {
        const client = yield* registryClient("com.example.busy")
        const calls = yield* Effect.forEach([1, 2, 3, 4, 5], () => Effect.fork(client.work()))
        yield* waitUntil(Effect.sync(() => tracker.entered === 2))
        yield* letOthersRun
        assert.strictEqual(tracker.entered, 2, "the other calls wait for a permit")
        assert.strictEqual(tracker.current, 2)

        yield* Deferred.succeed(tracker.gate, undefined)
        yield* Fiber.joinAll(calls)
        assert.strictEqual(tracker.entered, 5)
        assert.strictEqual(tracker.max, 2)
      }).pipe(
        Effect.provide(
          NodeTest.layer({ mesh, plugins: [limitsPlugin("com.example.busy", { maxGoroutines: 2 }, tracker)] })
        )
      )
    })
  )

  it.scopedLive(
    "without maxGoroutines every inbound call runs at once (the control for the test above)",
    () =>
      Effect.gen(function* () {
        const tracker = yield* makeTracker
        yield* Effect.gen(function* () {
          const client = yield* registryClient("com.example.free")
          const calls = yield* Effect.forEach([1, 2, 3, 4, 5], () => Effect.fork(client.work()))
          yield* waitUntil(Effect.sync(() => tracker.entered === 5))
          assert.strictEqual(tracker.current, 5)
          yield* Deferred.succeed(tracker.gate, undefined)
          yield* Fiber.joinAll(calls)
        }).pipe(
          Effect.provide(NodeTest.layer({ mesh, plugins: [limitsPlugin("com.example.free", {}, tracker)] }))
        )
      })
  )

  it.scopedLive("maxGoroutines 1: host→plugin→host calls do not deadlock", () =>
    Effect.gen(function* () {
      const client = yield* registryClient("com.example.nested")
      const identity = yield* Identity
      assert.strictEqual(yield* client.nested(), identity.nodeId)
      const results = yield* Effect.all([client.nested(), client.nested(), client.nested()], {
        concurrency: "unbounded"
      })
      assert.deepStrictEqual(results, [identity.nodeId, identity.nodeId, identity.nodeId])
      const manager = yield* PluginManager
      assert.strictEqual((yield* manager.get("com.example.nested")).state, "running")
    }).pipe(
      Effect.provide(
        NodeTest.layer({ mesh, plugins: [limitsPlugin("com.example.nested", { maxGoroutines: 1 })] })
      )
    )
  )
})

/** The operator's client of the `limits` service, after checking that `id` is running. */
function registryClient(id = "com.example.mem") {
  return Effect.gen(function* () {
    const manager = yield* PluginManager
    const info = yield* manager.get(id)
    assert.strictEqual(info.state, "running", info.error ?? "")
    const registry = yield* ServiceRegistry
    return registry.client(Principal.operator, Limits)
  })
}
