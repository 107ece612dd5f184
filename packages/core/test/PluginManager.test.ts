import * as CoreServices from "@blackhole/sdk/CoreServices"
import * as Errors from "@blackhole/sdk/Errors"
import * as Plugin from "@blackhole/sdk/Plugin"
import * as PluginConfig from "@blackhole/sdk/PluginConfig"
import type { PluginManifestEncoded } from "@blackhole/sdk/PluginManifest"
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
import * as Services from "@blackhole/sdk/Services"
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { EventBus } from "../src/EventBus.js"
import * as NodeTest from "../src/NodeTest.js"
import { PluginManager } from "../src/PluginManager.js"
import * as Principal from "../src/Principal.js"
import { ServiceRegistry } from "../src/ServiceRegistry.js"

type BusEvent = { readonly type: string; readonly data?: unknown }

type Extra = Partial<Omit<PluginManifestEncoded, "id" | "name" | "type">>

/** An integration plugin that records `start:<id>` and, on stop, `stop:<id>` in `log`. */
const recorder = (id: string, log: Array<string>, extra: Extra = {}) =>
  Plugin.integration({
    manifest: { id, name: id, version: "1.0.0", type: "integration", ...extra },
    config: PluginConfig.none,
    program: Effect.gen(function* () {
      yield* Effect.sync(() => log.push(`start:${id}`))
      yield* Effect.addFinalizer(() => Effect.sync(() => log.push(`stop:${id}`)))
      return { integration: { kind: "recorder", sync: Effect.void } }
    })
  })

/** A named service contract with one read method answering the serving plugin's id. */
const whoami = (name: string) =>
  ServiceContract.make(
    name,
    RpcGroup.make(ServiceContract.read(Rpc.make("whoami", { success: Schema.String })))
  )

/** A service plugin serving `contracts` (declared in its manifest as `declared`). */
const server = (
  id: string,
  contracts: ReadonlyArray<ReturnType<typeof whoami>>,
  declared: ReadonlyArray<string> = contracts.map((c) => c.name)
) =>
  Plugin.service({
    manifest: { id, name: id, version: "1.0.0", type: "service", services: declared },
    config: PluginConfig.none,
    program: Effect.sync(() => {
      const [first, ...rest] = contracts.map((contract) =>
        ServiceContract.implement(contract, { whoami: () => Effect.succeed(id) })
      )
      return { services: [first!, ...rest] as const }
    })
  })

/** The types of the `plugin.*` events about `id`, in order. */
const statesOf = (events: ReadonlyArray<BusEvent>, id: string) =>
  events.filter((event) => (event.data as { id?: string } | undefined)?.id === id).map((event) => event.type)

/**
 * Everything the subscription has received so far: publishes a marker (the bus delivers in
 * order, synchronously into the buffer) and reads up to it.
 */
const drain = (bus: EventBus.Service, subscription: { readonly stream: Stream.Stream<BusEvent> }) =>
  Effect.gen(function* () {
    yield* bus.publish({ type: "plugin.test-marker", source: "test" })
    const events = yield* subscription.stream.pipe(
      Stream.takeUntil((event) => event.type === "plugin.test-marker"),
      Stream.runCollect
    )
    return Chunk.toReadonlyArray(events).filter((event) => event.type !== "plugin.test-marker")
  })

describe("PluginManager: dependencies", () => {
  it.scopedLive("starts dependencies first and stops in reverse order when the node closes", () =>
    Effect.gen(function* () {
      const log: Array<string> = []
      // Ids chosen so that alphabetical order is the wrong order.
      const dependent = Plugin.integration({
        manifest: {
          id: "com.example.alpha",
          name: "alpha",
          version: "1.0.0",
          type: "integration",
          permissions: ["service:zeta:read"],
          dependencies: { "com.example.zeta": "^1.0.0" }
        },
        config: PluginConfig.none,
        program: Effect.gen(function* () {
          // The dependency is running, and its service is on the mesh, before this program starts.
          const who = yield* Effect.flatMap(Services.client(whoami("zeta")), (client) => client.whoami())
          log.push(`start:com.example.alpha (zeta says ${who})`)
          yield* Effect.addFinalizer(() => Effect.sync(() => log.push("stop:com.example.alpha")))
          return { integration: { kind: "dependent", sync: Effect.void } }
        })
      })
      const zetaServer = Plugin.service({
        manifest: {
          id: "com.example.zeta",
          name: "zeta",
          version: "1.0.0",
          type: "service",
          services: ["zeta"]
        },
        config: PluginConfig.none,
        program: Effect.gen(function* () {
          log.push("start:com.example.zeta")
          yield* Effect.addFinalizer(() => Effect.sync(() => log.push("stop:com.example.zeta")))
          return {
            services: [
              ServiceContract.implement(whoami("zeta"), { whoami: () => Effect.succeed("com.example.zeta") })
            ]
          }
        })
      })

      const scope = yield* Scope.make()
      yield* Layer.buildWithScope(NodeTest.layer({ plugins: [dependent, zetaServer] }), scope)
      assert.deepStrictEqual(log, [
        "start:com.example.zeta",
        "start:com.example.alpha (zeta says com.example.zeta)"
      ])
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(log, [
        "start:com.example.zeta",
        "start:com.example.alpha (zeta says com.example.zeta)",
        "stop:com.example.alpha",
        "stop:com.example.zeta"
      ])
    })
  )

  it.scopedLive("stopAll stops in reverse dependency order and startAll starts again in order", () =>
    Effect.gen(function* () {
      const log: Array<string> = []
      const plugins = [
        recorder("com.example.c", log, { dependencies: { "com.example.b": "^1.0.0" } }),
        recorder("com.example.a", log, { dependencies: { "com.example.c": ">=1.0.0" } }),
        recorder("com.example.b", log)
      ]
      yield* Effect.gen(function* () {
        const manager = yield* PluginManager
        assert.deepStrictEqual(log, ["start:com.example.b", "start:com.example.c", "start:com.example.a"])
        yield* manager.stopAll
        assert.deepStrictEqual(log.slice(3), [
          "stop:com.example.a",
          "stop:com.example.c",
          "stop:com.example.b"
        ])
        for (const info of yield* manager.list) assert.strictEqual(info.state, "stopped")
        yield* manager.startAll
        assert.deepStrictEqual(log.slice(6), [
          "start:com.example.b",
          "start:com.example.c",
          "start:com.example.a"
        ])
      }).pipe(Effect.provide(NodeTest.layer({ plugins })))
    })
  )

  it.scopedLive("a missing dependency or a version mismatch fails the plugin with a DependencyError", () =>
    Effect.gen(function* () {
      const manager = yield* PluginManager
      const missing = yield* manager.get("com.example.missing")
      assert.strictEqual(missing.state, "failed")
      assert.include(missing.error, "com.example.nowhere")
      assert.include(missing.error, "not installed")

      const mismatch = yield* manager.get("com.example.mismatch")
      assert.strictEqual(mismatch.state, "failed")
      assert.include(mismatch.error, "com.example.base ^2.0.0")
      assert.include(mismatch.error, "1.0.0 is installed")

      const error = yield* Effect.flip(manager.start("com.example.mismatch"))
      assert.instanceOf(error, Errors.DependencyError)
      assert.strictEqual((error as Errors.DependencyError).pluginId, "com.example.mismatch")

      // The dependency itself and the node are fine.
      assert.strictEqual((yield* manager.get("com.example.base")).state, "running")
    }).pipe(
      Effect.provide(
        NodeTest.layer({
          plugins: [
            recorder("com.example.missing", [], { dependencies: { "com.example.nowhere": "^1.0.0" } }),
            recorder("com.example.mismatch", [], { dependencies: { "com.example.base": "^2.0.0" } }),
            recorder("com.example.base", [])
          ]
        })
      )
    )
  )

  it.scopedLive("a dependency on a plugin that failed fails too", () =>
    Effect.gen(function* () {
      const manager = yield* PluginManager
      assert.strictEqual((yield* manager.get("com.example.broken")).state, "failed")
      const dependent = yield* manager.get("com.example.dependent")
      assert.strictEqual(dependent.state, "failed")
      assert.include(dependent.error, "com.example.broken")
    }).pipe(
      Effect.provide(
        NodeTest.layer({
          plugins: [
            Plugin.integration({
              manifest: { id: "com.example.broken", name: "broken", version: "1.0.0", type: "integration" },
              config: PluginConfig.none,
              program: Effect.fail("cannot start")
            }),
            recorder("com.example.dependent", [], { dependencies: { "com.example.broken": "*" } })
          ]
        })
      )
    )
  )

  it.scopedLive("a dependency cycle fails every plugin in it, naming the cycle, and runs none of them", () =>
    Effect.gen(function* () {
      const log: Array<string> = []
      yield* Effect.gen(function* () {
        const manager = yield* PluginManager
        for (const id of ["com.example.ping", "com.example.pong"]) {
          const info = yield* manager.get(id)
          assert.strictEqual(info.state, "failed")
          assert.include(info.error, "cycle")
          assert.include(info.error, "com.example.ping")
          assert.include(info.error, "com.example.pong")
        }
        assert.strictEqual((yield* manager.get("com.example.bystander")).state, "running")
        assert.deepStrictEqual(log, ["start:com.example.bystander"])
      }).pipe(
        Effect.provide(
          NodeTest.layer({
            plugins: [
              recorder("com.example.ping", log, { dependencies: { "com.example.pong": "^1.0.0" } }),
              recorder("com.example.pong", log, { dependencies: { "com.example.ping": "^1.0.0" } }),
              recorder("com.example.bystander", log)
            ]
          })
        )
      )
    })
  )
})

describe("PluginManager: compatibility", () => {
  const compatible = (id: string, minVersion: string, maxVersion: string) =>
    recorder(id, [], { compatibility: { minVersion, maxVersion } })

  it.scopedLive(
    "compatibility bounds are inclusive; a node version outside fails with IncompatiblePlugin",
    () =>
      Effect.gen(function* () {
        const manager = yield* PluginManager
        for (const id of ["com.example.exact", "com.example.upto", "com.example.from"]) {
          const info = yield* manager.get(id)
          assert.strictEqual(info.state, "running", `${id}: ${info.error}`)
        }
        for (const id of ["com.example.future", "com.example.past"]) {
          const info = yield* manager.get(id)
          assert.strictEqual(info.state, "failed")
          assert.include(info.error, "0.1.0")
        }
        const error = yield* Effect.flip(manager.start("com.example.future"))
        assert.instanceOf(error, Errors.IncompatiblePlugin)
        const incompatible = error as Errors.IncompatiblePlugin
        assert.strictEqual(incompatible.nodeVersion, "0.1.0")
        assert.strictEqual(incompatible.minVersion, "0.2.0")
        assert.strictEqual(incompatible.maxVersion, "1.0.0")
      }).pipe(
        Effect.provide(
          NodeTest.layer({
            version: "0.1.0",
            plugins: [
              compatible("com.example.exact", "0.1.0", "0.1.0"),
              compatible("com.example.upto", "0.0.1", "0.1.0"),
              compatible("com.example.from", "0.1.0", "2.0.0"),
              compatible("com.example.future", "0.2.0", "1.0.0"),
              compatible("com.example.past", "0.0.1", "0.0.9")
            ]
          })
        )
      )
  )
})

describe("PluginManager: lifecycle", () => {
  it.scopedLive("every state change is published as plugin.<state>; restart counts", () =>
    Effect.gen(function* () {
      const manager = yield* PluginManager
      const bus = yield* EventBus
      const subscription = yield* bus.subscribe("plugin.*")
      const id = "com.example.cycled"
      const log: Array<string> = []
      yield* manager.register(recorder(id, log))
      assert.strictEqual((yield* manager.get(id)).state, "registered")
      yield* manager.start(id)
      assert.strictEqual((yield* manager.get(id)).state, "running")
      yield* manager.stop(id)
      assert.strictEqual((yield* manager.get(id)).state, "stopped")
      assert.deepStrictEqual(statesOf(yield* drain(bus, subscription), id), [
        "plugin.registered",
        "plugin.starting",
        "plugin.running",
        "plugin.stopping",
        "plugin.stopped"
      ])

      yield* manager.start(id)
      yield* drain(bus, subscription)
      yield* manager.restart(id)
      const events = yield* drain(bus, subscription)
      assert.deepStrictEqual(statesOf(events, id), [
        "plugin.stopping",
        "plugin.stopped",
        "plugin.restarting",
        "plugin.starting",
        "plugin.running"
      ])
      assert.deepStrictEqual(events[0]!.data, { id, state: "stopping" })
      assert.strictEqual(events[0]!.type, "plugin.stopping")
      const info = yield* manager.get(id)
      assert.strictEqual(info.state, "running")
      assert.strictEqual(info.restarts, 1)
      assert.deepStrictEqual(log, [`start:${id}`, `stop:${id}`, `start:${id}`, `stop:${id}`, `start:${id}`])
    }).pipe(Effect.provide(NodeTest.layer()))
  )

  it.scopedLive("stop is idempotent: stopping a stopped plugin succeeds and changes nothing", () =>
    Effect.gen(function* () {
      const manager = yield* PluginManager
      const bus = yield* EventBus
      const id = "com.example.once"
      const log: Array<string> = []
      yield* manager.register(recorder(id, log))
      yield* manager.start(id)
      yield* manager.stop(id)
      const subscription = yield* bus.subscribe("plugin.*")
      yield* manager.stop(id)
      yield* manager.stop(id)
      assert.strictEqual((yield* manager.get(id)).state, "stopped")
      assert.deepStrictEqual(log, [`start:${id}`, `stop:${id}`], "finalizers ran once")
      assert.deepStrictEqual(statesOf(yield* drain(bus, subscription), id), [])

      // Stopping one that never started is fine too.
      yield* manager.register(recorder("com.example.never", []))
      yield* manager.stop("com.example.never")
      const unknown = yield* Effect.flip(manager.stop("com.example.unknown"))
      assert.instanceOf(unknown, Errors.PluginNotFound)
    }).pipe(Effect.provide(NodeTest.layer()))
  )

  it.scopedLive(
    "a program that fails or dies leaves its plugin failed with the reason; the rest keeps running",
    () =>
      Effect.gen(function* () {
        const manager = yield* PluginManager
        const failing = yield* manager.get("com.example.failing")
        assert.strictEqual(failing.state, "failed")
        assert.include(failing.error, "no database configured")
        const dying = yield* manager.get("com.example.dying")
        assert.strictEqual(dying.state, "failed")
        assert.include(dying.error, "kaput")

        const error = yield* Effect.flip(manager.start("com.example.dying"))
        assert.instanceOf(error, Errors.PluginFailure)
        assert.include((error as Errors.PluginFailure).reason, "kaput")

        assert.strictEqual((yield* manager.get("com.example.healthy")).state, "running")
        const registry = yield* ServiceRegistry
        assert.strictEqual(
          yield* registry.client(Principal.operator, whoami("healthy")).whoami(),
          "com.example.healthy"
        )
        const node = yield* registry.client(Principal.operator, CoreServices.Node).plugins()
        assert.strictEqual(node.length, 3)
      }).pipe(
        Effect.provide(
          NodeTest.layer({
            plugins: [
              Plugin.integration({
                manifest: {
                  id: "com.example.failing",
                  name: "failing",
                  version: "1.0.0",
                  type: "integration"
                },
                config: PluginConfig.none,
                program: Effect.fail(new Error("no database configured"))
              }),
              Plugin.integration({
                manifest: { id: "com.example.dying", name: "dying", version: "1.0.0", type: "integration" },
                config: PluginConfig.none,
                program: Effect.sync(() => {
                  throw new Error("kaput")
                })
              }),
              server("com.example.healthy", [whoami("healthy")])
            ]
          })
        )
      )
  )

  it.scopedLive("a failed start runs the finalizers the program had added", () =>
    Effect.gen(function* () {
      const log: Array<string> = []
      yield* Effect.gen(function* () {
        const manager = yield* PluginManager
        assert.strictEqual((yield* manager.get("com.example.half")).state, "failed")
        assert.deepStrictEqual(log, ["cleanup"])
      }).pipe(
        Effect.provide(
          NodeTest.layer({
            plugins: [
              Plugin.integration({
                manifest: { id: "com.example.half", name: "half", version: "1.0.0", type: "integration" },
                config: PluginConfig.none,
                program: Effect.gen(function* () {
                  yield* Effect.addFinalizer(() => Effect.sync(() => log.push("cleanup")))
                  return yield* Effect.dieMessage("half-way")
                })
              })
            ]
          })
        )
      )
    })
  )
})

describe("PluginManager: services", () => {
  it.scopedLive(
    "a plugin serving a service its manifest does not declare fails, and the service is not registered",
    () =>
      Effect.gen(function* () {
        const manager = yield* PluginManager
        const info = yield* manager.get("com.example.sneaky")
        assert.strictEqual(info.state, "failed")
        assert.include(info.error, "undeclared")
        const registry = yield* ServiceRegistry
        assert.isTrue(Option.isNone(registry.lookup("undeclared")))
        assert.isTrue(
          Option.isNone(registry.lookup("declared")),
          "nothing of a failed plugin stays on the mesh"
        )
      }).pipe(
        Effect.provide(
          NodeTest.layer({
            plugins: [server("com.example.sneaky", [whoami("declared"), whoami("undeclared")], ["declared"])]
          })
        )
      )
  )

  it.scopedLive("two plugins declaring the same service: the second fails with ServiceNameTaken", () =>
    Effect.gen(function* () {
      const manager = yield* PluginManager
      const registry = yield* ServiceRegistry
      assert.strictEqual((yield* manager.get("com.example.first")).state, "running")
      const second = yield* manager.get("com.example.second")
      assert.strictEqual(second.state, "failed")
      assert.include(second.error, "com.example.first")
      const error = yield* Effect.flip(manager.start("com.example.second"))
      assert.instanceOf(error, Errors.ServiceNameTaken)
      assert.strictEqual((error as Errors.ServiceNameTaken).owner, "com.example.first")
      assert.strictEqual(
        yield* registry.client(Principal.operator, whoami("dup")).whoami(),
        "com.example.first"
      )

      // Once the first stops, the name is free and the second can start.
      yield* manager.stop("com.example.first")
      yield* manager.start("com.example.second")
      assert.strictEqual(
        yield* registry.client(Principal.operator, whoami("dup")).whoami(),
        "com.example.second"
      )
    }).pipe(
      Effect.provide(
        NodeTest.layer({
          plugins: [
            server("com.example.first", [whoami("dup")]),
            server("com.example.second", [whoami("dup")])
          ]
        })
      )
    )
  )

  it.scopedLive("a plugin registering a core service name fails and the core service is untouched", () =>
    Effect.gen(function* () {
      const manager = yield* PluginManager
      const info = yield* manager.get("com.example.usurper")
      assert.strictEqual(info.state, "failed")
      assert.include(info.error, "storage")
      const registry = yield* ServiceRegistry
      assert.strictEqual(Option.getOrThrow(registry.lookup("storage")).owner, "core")
      yield* registry.client(Principal.operator, CoreServices.Storage).list({ namespace: "x", prefix: "" })
    }).pipe(Effect.provide(NodeTest.layer({ plugins: [server("com.example.usurper", [whoami("storage")])] })))
  )
})

describe("PluginManager: registration", () => {
  it.scopedLive(
    "a manifest type that does not match the definition's constructor is refused at register",
    () =>
      Effect.gen(function* () {
        const manager = yield* PluginManager
        const mislabelled = {
          ...recorder("com.example.mislabelled", []),
          manifest: { id: "com.example.mislabelled", name: "x", version: "1.0.0", type: "service" }
        } as unknown as Plugin.Any
        const error = yield* Effect.flip(manager.register(mislabelled))
        assert.include(["DependencyError", "InvalidManifest"], error._tag)
        assert.include(error.message, "service")
        assert.include(error.message, "integration")
        const missing = yield* Effect.flip(manager.get("com.example.mislabelled"))
        assert.instanceOf(missing, Errors.PluginNotFound)
      }).pipe(Effect.provide(NodeTest.layer()))
  )

  it.scopedLive("an invalid manifest is refused at register with InvalidManifest", () =>
    Effect.gen(function* () {
      const manager = yield* PluginManager
      const invalid = recorder("Not An Id", [])
      const error = yield* Effect.flip(manager.register(invalid))
      assert.instanceOf(error, Errors.InvalidManifest)
      assert.deepStrictEqual(
        (error as Errors.InvalidManifest).issues.map((issue) => issue.path),
        ["id"]
      )
    }).pipe(Effect.provide(NodeTest.layer()))
  )

  it.scopedLive("a second plugin with the same id is refused", () =>
    Effect.gen(function* () {
      const manager = yield* PluginManager
      const error = yield* Effect.flip(manager.register(recorder("com.example.twin", [])))
      assert.instanceOf(error, Errors.DependencyError)
      assert.include(error.message, "already registered")
    }).pipe(Effect.provide(NodeTest.layer({ plugins: [recorder("com.example.twin", [])] })))
  )

  it.scopedLive("list reports compiled-in plugins as loader inprocess with pid null", () =>
    Effect.gen(function* () {
      const manager = yield* PluginManager
      const list = yield* manager.list
      assert.deepStrictEqual(
        list.map(({ id, loader, pid, memoryBytes, lastExit, state, restarts, type, version }) => ({
          id,
          loader,
          pid,
          memoryBytes,
          lastExit,
          state,
          restarts,
          type,
          version
        })),
        [
          {
            id: "com.example.listed",
            loader: "inprocess",
            pid: null,
            memoryBytes: null,
            lastExit: null,
            state: "running",
            restarts: 0,
            type: "integration",
            version: "1.0.0"
          }
        ]
      )
      assert.deepStrictEqual(list[0]!.dependencies, {})
    }).pipe(Effect.provide(NodeTest.layer({ plugins: [recorder("com.example.listed", [])] })))
  )

  it.scopedLive("unregister stops a running plugin and forgets it", () =>
    Effect.gen(function* () {
      const manager = yield* PluginManager
      const log: Array<string> = []
      yield* manager.register(recorder("com.example.gone", log))
      yield* manager.start("com.example.gone")
      yield* manager.unregister("com.example.gone")
      assert.deepStrictEqual(log, ["start:com.example.gone", "stop:com.example.gone"])
      assert.instanceOf(yield* Effect.flip(manager.get("com.example.gone")), Errors.PluginNotFound)
      // The id is free again.
      yield* manager.register(recorder("com.example.gone", log))
    }).pipe(Effect.provide(NodeTest.layer()))
  )
})

describe("PluginManager: interrupted start", () => {
  it.scopedLive(
    "a start interrupted while the program runs does not leave the plugin stuck in starting",
    () =>
      Effect.gen(function* () {
        const manager = yield* PluginManager
        const gate = yield* Deferred.make<void>()
        const log: Array<string> = []
        const id = "com.example.slowstart"
        yield* manager.register(
          Plugin.integration({
            manifest: { id, name: id, version: "1.0.0", type: "integration" },
            config: PluginConfig.none,
            program: Effect.gen(function* () {
              log.push("program")
              yield* Deferred.await(gate)
              log.push("started")
              return { integration: { kind: "slow", sync: Effect.void } }
            })
          })
        )
        const starting = yield* Effect.fork(manager.start(id))
        for (let i = 0; i < 1000 && log.length === 0; i++) yield* Effect.sleep("2 millis")
        yield* Fiber.interrupt(starting)
        assert.notStrictEqual((yield* manager.get(id)).state, "starting")

        yield* Deferred.succeed(gate, undefined)
        yield* manager.start(id)
        assert.strictEqual((yield* manager.get(id)).state, "running")
        assert.deepStrictEqual(log, ["program", "program", "started"])
      }).pipe(Effect.provide(NodeTest.layer()))
  )
})
