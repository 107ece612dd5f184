/**
 * One conformance suite, run against both loaders: the very same plugin module
 * (fixtures/plugins/conformance) compiled-in and in its own process. Every check
 * reads the host's side — its bus, storage, mesh, hook registry and plugin
 * manager — never what the plugin reads back from itself.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type * as Errors from "@blackhole/sdk/Errors"
import type { Event } from "@blackhole/sdk/Event"
import * as PluginConfig from "@blackhole/sdk/PluginConfig"
import * as PluginManifest from "@blackhole/sdk/PluginManifest"
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as BlackholeNode from "../src/BlackholeNode.js"
import { EventBus } from "../src/EventBus.js"
import { HookRegistry } from "../src/HookRegistry.js"
import { Identity } from "../src/Identity.js"
import * as NodeTest from "../src/NodeTest.js"
import type { LoaderKind } from "../src/PluginLoader.js"
import { PluginManager } from "../src/PluginManager.js"
import * as Principal from "../src/Principal.js"
import * as Sandbox from "../src/Sandbox.js"
import { ServiceRegistry } from "../src/ServiceRegistry.js"
import { Storage } from "../src/Storage.js"
import * as SubprocessLoader from "../src/SubprocessLoader.js"
import { Conformance, ConformanceError } from "./fixtures/plugins/conformance/contract.mjs"
import definition, { manifest as definitionManifest } from "./fixtures/plugins/conformance/index.mjs"
import { captureLogs, type LogLine } from "./support.js"

const directory = fileURLToPath(new URL("./fixtures/plugins/conformance/", import.meta.url))
const pluginId = "com.blackhole.test.conformance"
const namespace = Sandbox.namespaceOf(pluginId)
const encoder = new TextEncoder()
const decoder = new TextDecoder()

const manifestFromJson = PluginManifest.decodeJson(
  fs.readFileSync(path.join(directory, "plugin.json"), "utf8"),
  directory
)

// --- the loaders under test

interface LoaderCase {
  readonly name: string
  readonly kind: LoaderKind
  /** Registers the fixture with the operator's raw `config`. */
  readonly register: (
    config: unknown
  ) => Effect.Effect<void, Errors.InvalidManifest | Errors.DependencyError, PluginManager>
}

const loaders: ReadonlyArray<LoaderCase> = [
  {
    name: "compiled-in",
    kind: "inprocess",
    register: (config) => Effect.flatMap(PluginManager, (manager) => manager.register(definition, { config }))
  },
  {
    name: "subprocess",
    kind: "subprocess",
    register: (config) =>
      Effect.gen(function* () {
        const manifest = yield* manifestFromJson
        const manager = yield* PluginManager
        yield* manager.registerWith(manifest, SubprocessLoader.make({ directory, manifest }), { config })
      })
  }
]

// --- host-side observation helpers

/** Polls `probe` until it yields a value (bounded: 10 s), for asynchronous delivery. */
const eventually = <A, E, R>(probe: Effect.Effect<A | undefined, E, R>, what: string) =>
  Effect.gen(function* () {
    for (let i = 0; i < 1000; i++) {
      const value = yield* probe
      if (value !== undefined) return value
      yield* Effect.sleep("10 millis")
    }
    return yield* Effect.dieMessage(`not reached within 10 s: ${what}`)
  })

/** Records every event of `pattern` on the host's bus from now on. */
const record = (pattern: string) =>
  Effect.gen(function* () {
    const bus = yield* EventBus
    const subscription = yield* bus.subscribe(pattern, { capacity: 4096 })
    const seen: Array<Event> = []
    yield* subscription.stream.pipe(
      Stream.runForEach((event) => Effect.sync(() => seen.push(event))),
      Effect.forkScoped
    )
    return seen
  })

const awaitEvent = (
  seen: ReadonlyArray<Event>,
  type: string,
  where: (event: Event) => boolean = () => true
) =>
  eventually(
    Effect.sync(() => seen.find((event) => event.type === type && where(event))),
    `host bus event ${type}`
  )

/** What the host's storage holds, as text. */
const hostValue = (ns: string, key: string) =>
  Effect.flatMap(Storage, (storage) => storage.retrieve(ns, key)).pipe(
    Effect.map(Option.map((bytes) => decoder.decode(bytes))),
    Effect.map(Option.getOrUndefined)
  )

const hooksOf = (owner: string) =>
  Effect.map(
    Effect.flatMap(HookRegistry, (hooks) => hooks.registrations),
    (all) =>
      all
        .filter((registration) => registration.owner === owner)
        .map((registration) => registration.name)
        .sort()
  )

const subscribers = Effect.map(
  Effect.flatMap(EventBus, (bus) => bus.stats),
  (stats) => stats.subscribers
)

/** Whether a process is alive (a zombie awaiting its reaper counts as gone). */
const isAlive = (pid: number): boolean => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z"
  } catch {
    return false
  }
}

/**
 * A fresh in-memory node per test, the host's log captured (and printed if the test fails).
 * Requirements left open: the node's services and the test's Scope.
 */
const onNode =
  <A, E>(
    body: (logs: ReadonlyArray<LogLine>) => Effect.Effect<A, E, BlackholeNode.NodeServices | Scope.Scope>
  ) =>
  () => {
    const logs: Array<LogLine> = []
    return body(logs).pipe(
      Effect.provide(NodeTest.layer()),
      Effect.onExit((exit) =>
        Exit.isFailure(exit)
          ? Effect.sync(() => {
              for (const line of logs) console.error(`[${line.level}] ${line.message}`, line.annotations)
            })
          : Effect.void
      ),
      Effect.provide(captureLogs(logs))
    )
  }

/** Subscribes the host's recorders, then registers and starts the plugin with `config`. */
const startPlugin = (loader: LoaderCase, config: unknown = { label: loader.name }) =>
  Effect.gen(function* () {
    const manager = yield* PluginManager
    const registry = yield* ServiceRegistry
    const conf = yield* record("conf.*")
    const lifecycle = yield* record("plugin.*")
    yield* loader.register(config)
    yield* manager.start(pluginId)
    return { manager, registry, conf, lifecycle, client: registry.client(Principal.operator, Conformance) }
  })

const bytes = (text: string) => encoder.encode(text)

describe("the conformance fixture", () => {
  it.effect("its definition's manifest is its plugin.json (but for main)", () =>
    Effect.gen(function* () {
      const fromJson = yield* manifestFromJson
      const fromDefinition = yield* PluginManifest.decode(definitionManifest, "index.mjs")
      assert.strictEqual(fromJson.main, "index.mjs")
      assert.deepStrictEqual({ ...fromDefinition, main: fromJson.main }, fromJson)
      assert.strictEqual(definition.manifest, definitionManifest)
    })
  )

  it("its config.schema.json is what its config Schema says (the host validates against the file)", () => {
    const file = JSON.parse(fs.readFileSync(path.join(directory, "config.schema.json"), "utf8"))
    assert.deepStrictEqual(file, PluginConfig.toJsonSchema(definition.config))
  })
})

for (const loader of loaders) {
  describe(`loader conformance: ${loader.name}`, () => {
    it.scopedLive(
      "starts running: plugin.* events, config with defaults, node info, logger, its own storage",
      onNode((logs) =>
        Effect.gen(function* () {
          const identity = yield* Identity
          const { manager, client, conf, lifecycle } = yield* startPlugin(loader)

          const info = yield* manager.get(pluginId)
          assert.strictEqual(info.state, "running")
          assert.strictEqual(info.loader, loader.kind)
          assert.strictEqual(info.error, null)
          assert.includeMembers([...info.granted], ["storage:read", "service:node:read"])
          yield* awaitEvent(lifecycle, "plugin.running")
          assert.deepStrictEqual(
            lifecycle.map((event) => `${event.type} ${(event.data as { id: string }).id} (${event.source})`),
            [
              `plugin.registered ${pluginId} (core)`,
              `plugin.starting ${pluginId} (core)`,
              `plugin.running ${pluginId} (core)`
            ]
          )

          // The program published once it had read its config (defaults applied) and NodeInfo.
          const started = yield* awaitEvent(conf, "conf.started")
          assert.strictEqual(started.source, pluginId)
          assert.deepStrictEqual(started.data, {
            label: loader.name,
            greeting: "hello",
            starts: 1,
            nodeId: identity.nodeId,
            environment: "test"
          })
          assert.deepStrictEqual(yield* client.settings(), { label: loader.name, greeting: "hello" })
          assert.strictEqual(yield* hostValue(namespace, "lifecycle/starts"), "1")

          // PluginLogger lines reach the host's log tagged with the plugin id.
          const greeting = yield* eventually(
            Effect.sync(() => logs.find((line) => line.message === `hello from ${loader.name}`)),
            "the start log line"
          )
          assert.strictEqual(greeting.level, "INFO")
          assert.strictEqual(greeting.annotations.plugin, pluginId)
          assert.strictEqual(greeting.annotations.starts, 1)
          yield* client.log({ message: "logged on request" })
          const requested = yield* eventually(
            Effect.sync(() => logs.find((line) => line.message === "logged on request")),
            "the requested log line"
          )
          assert.deepStrictEqual(
            {
              level: requested.level,
              plugin: requested.annotations.plugin,
              label: requested.annotations.label
            },
            { level: "INFO", plugin: pluginId, label: loader.name }
          )

          // Where it runs: in this process, or in its own.
          const pid = yield* client.pid()
          if (loader.kind === "inprocess") {
            assert.strictEqual(info.pid, null)
            assert.strictEqual(info.memoryBytes, null)
            assert.strictEqual(pid, process.pid)
          } else {
            assert.isNumber(info.pid)
            assert.notStrictEqual(info.pid, process.pid)
            assert.strictEqual(pid, info.pid)
            assert.isAbove(info.memoryBytes ?? 0, 0)
          }
        })
      )
    )

    it.scopedLive(
      "events: a handler that awaits a context call keeps up with a burst far over the delivery buffer",
      onNode(() =>
        Effect.gen(function* () {
          const bus = yield* EventBus
          yield* startPlugin(loader)
          // Its content.* handler awaits a storage call per event: a burst of 200 events must not
          // leave a handler waiting for an answer queued behind the events it has yet to take.
          const burst = 200
          for (let i = 0; i < burst; i++) {
            yield* bus.publish({ type: `content.burst${i}`, source: "core", data: { i } })
          }
          for (let i = burst - 1; i >= 0; i--) {
            yield* eventually(
              hostValue(namespace, `received/content.burst${i}`),
              `content.burst${i} recorded`
            )
          }
        })
      ),
      30_000
    )

    it.scopedLive(
      "events: what it publishes is stamped with its id; it receives content.*; a refused type is a typed error",
      onNode(() =>
        Effect.gen(function* () {
          const bus = yield* EventBus
          const { manager, client, conf } = yield* startPlugin(loader)

          yield* client.publish({ type: "conf.hello", data: { n: 1, list: ["a", null] } })
          const hello = yield* awaitEvent(conf, "conf.hello")
          assert.strictEqual(hello.source, pluginId)
          assert.deepStrictEqual(hello.data, { n: 1, list: ["a", null] })

          yield* bus.publish({ type: "content.created", source: "core", data: { id: "c1" } })
          const received = yield* eventually(
            hostValue(namespace, "received/content.created"),
            "the plugin recorded content.created"
          )
          assert.deepStrictEqual(JSON.parse(received), {
            type: "content.created",
            source: "core",
            data: { id: "c1" }
          })

          const refused = yield* Effect.flip(client.publish({ type: "other.x", data: 1 }))
          assert.strictEqual(refused._tag, "PermissionDenied")
          assert.strictEqual((refused as Errors.PermissionDenied).permission, "events:publish:other.x")
          assert.strictEqual((refused as Errors.PermissionDenied).principal, pluginId)

          // A type that is not concrete is the plugin's defect: the caller gets PluginFailure, the plugin runs on.
          const invalid = yield* Effect.flip(client.publish({ type: "conf.*", data: 1 }))
          assert.strictEqual(invalid._tag, "PluginFailure")
          assert.include((invalid as Errors.PluginFailure).reason, "wildcards are for patterns")
          assert.strictEqual((yield* manager.get(pluginId)).state, "running")
        })
      )
    )

    it.scopedLive(
      "storage: what it stores is in its namespace on the host, and it reads what the host wrote there",
      onNode(() =>
        Effect.gen(function* () {
          const storage = yield* Storage
          const { client } = yield* startPlugin(loader)

          // A void method answers undefined in either loader (not JSON's null), as does the
          // plugin's own void context call inside it.
          assert.isUndefined(yield* client.store({ key: "notes/a", text: "alpha" }))
          assert.strictEqual(yield* hostValue(namespace, "notes/a"), "alpha")
          assert.isUndefined(yield* hostValue("notes", "a"))

          yield* storage.store("core", namespace, "notes/b", bytes("beta"))
          assert.strictEqual(yield* client.retrieve({ key: "notes/b" }), "beta")
          assert.isNull(yield* client.retrieve({ key: "notes/none" }))
          assert.deepStrictEqual(yield* client.list({ prefix: "notes/" }), ["notes/a", "notes/b"])
          assert.deepStrictEqual(yield* storage.list(namespace, "notes/"), ["notes/a", "notes/b"])

          assert.isTrue(yield* client.remove({ key: "notes/a" }))
          assert.isFalse(yield* client.remove({ key: "notes/a" }))
          assert.isUndefined(yield* hostValue(namespace, "notes/a"))
          assert.deepStrictEqual(yield* storage.list(namespace, "notes/"), ["notes/b"])
        })
      )
    )

    it.scopedLive(
      "services: it calls a core service under its grant, and the mesh sees the call as the plugin's",
      onNode(() =>
        Effect.gen(function* () {
          const identity = yield* Identity
          const hooks = yield* HookRegistry
          const calls: Array<unknown> = []
          yield* hooks.register("service.before.call", "conformance-test", (call) =>
            Effect.sync(() => {
              calls.push(call)
            })
          )
          const { client } = yield* startPlugin(loader)

          assert.deepStrictEqual(yield* client.nodeInfo(), {
            nodeId: identity.nodeId,
            version: BlackholeNode.version,
            environment: "test"
          })
          const seen = calls.map((call) => {
            const { service, method, principal } = call as {
              service: string
              method: string
              principal: string
            }
            return `${principal} → ${service}.${method}`
          })
          assert.deepStrictEqual(seen, ["operator → conformance.nodeInfo", `${pluginId} → node.info`])
        })
      )
    )

    it.scopedLive(
      "custom hooks: the plugin runs its own hook, a registered before hook may refuse it, built-in ones stay the node's",
      onNode(() =>
        Effect.gen(function* () {
          const hooks = yield* HookRegistry
          const { client } = yield* startPlugin(loader)
          const seen: Array<unknown> = []
          yield* hooks.register("conformance.before.act", "conformance-test", (payload) => {
            seen.push(payload)
            return (payload as { veto: boolean }).veto ? Effect.fail("not now") : Effect.void
          })
          yield* client.act({ veto: false })
          const refused = yield* Effect.flip(client.act({ veto: true }))
          assert.strictEqual(refused._tag, "HookVetoed")
          assert.strictEqual((refused as Errors.HookVetoed).by, "conformance-test")
          assert.strictEqual((refused as Errors.HookVetoed).hook, "conformance.before.act")
          assert.deepStrictEqual(seen, [{ veto: false }, { veto: true }])
        })
      )
    )

    it.scopedLive(
      "hooks: registered under its id; its before hook vetoes the host's write; its after hook sees the bytes",
      onNode(() =>
        Effect.gen(function* () {
          const storage = yield* Storage
          const { client, conf } = yield* startPlugin(loader)

          assert.deepStrictEqual(yield* hooksOf(pluginId), ["storage.after.write", "storage.before.write"])

          const vetoed = yield* Effect.flip(storage.store("core", "x", "deny/1", bytes("no")))
          assert.strictEqual(vetoed._tag, "HookVetoed")
          const veto = vetoed as Errors.HookVetoed
          assert.strictEqual(veto.by, pluginId)
          assert.strictEqual(veto.hook, "storage.before.write")
          assert.strictEqual(veto.reason, `${loader.name} refuses deny/1`)
          assert.isUndefined(yield* hostValue("x", "deny/1"))

          yield* storage.store("core", "x", "ok/1", bytes("yes"))
          assert.strictEqual(yield* hostValue("x", "ok/1"), "yes")
          const written = yield* awaitEvent(
            conf,
            "conf.written",
            (event) => (event.data as { key: string }).key === "ok/1"
          )
          assert.strictEqual(written.source, pluginId)
          assert.deepStrictEqual(written.data, { namespace: "x", key: "ok/1", principal: "core", size: 3 })

          // Its own writes pass through the same hooks: the veto reaches its caller typed.
          const own = yield* Effect.flip(client.store({ key: "deny/own", text: "no" }))
          assert.strictEqual(own._tag, "HookVetoed")
          assert.strictEqual((own as Errors.HookVetoed).by, pluginId)
          assert.isUndefined(yield* hostValue(namespace, "deny/own"))
          yield* client.store({ key: "notes/own", text: "four" })
          const ownWrite = yield* awaitEvent(
            conf,
            "conf.written",
            (event) => (event.data as { key: string }).key === "notes/own"
          )
          assert.deepStrictEqual(ownWrite.data, { namespace, key: "notes/own", principal: pluginId, size: 4 })
        })
      )
    )

    it.scopedLive(
      "permissions: what it was not granted is refused with typed errors and changes nothing on the host",
      onNode(() =>
        Effect.gen(function* () {
          const bus = yield* EventBus
          const registry = yield* ServiceRegistry
          const others = yield* record("other.*")
          const { client } = yield* startPlugin(loader)
          const hooksBefore = yield* hooksOf(pluginId)

          assert.deepStrictEqual(yield* client.denied(), [
            "PermissionDenied:events:publish:other.x",
            "PermissionDenied:events:subscribe:other.*",
            "PermissionDenied:service:storage:store",
            "PermissionDenied:service:identity:sign",
            "PermissionDenied:hooks:register:storage.before.delete"
          ])
          // Nothing reached the host: the first other.* event the host sees is its own sentinel.
          yield* bus.publish({ type: "other.sentinel", source: "core" })
          yield* awaitEvent(others, "other.sentinel")
          assert.deepStrictEqual(
            others.map((event) => event.type),
            ["other.sentinel"]
          )
          assert.isUndefined(yield* hostValue("conformance-denied", "k"))
          assert.deepStrictEqual(yield* hooksOf(pluginId), hooksBefore)

          // Callers of its service are checked against the access class of each method.
          const reader = registry.client(
            Principal.plugin("com.example.reader", ["service:conformance:read"]),
            Conformance
          )
          assert.strictEqual(yield* reader.pid(), yield* client.pid())
          const write = yield* Effect.flip(reader.store({ key: "notes/r", text: "r" }))
          assert.strictEqual(write._tag, "PermissionDenied")
          assert.strictEqual((write as Errors.PermissionDenied).permission, "service:conformance:store")
          const admin = yield* Effect.flip(reader.denied())
          assert.strictEqual((admin as Errors.PermissionDenied).permission, "service:conformance:denied")
          const writer = registry.client(
            Principal.plugin("com.example.writer", ["service:conformance:write"]),
            Conformance
          )
          yield* writer.store({ key: "notes/w", text: "w" })
          assert.strictEqual(yield* hostValue(namespace, "notes/w"), "w")
        })
      )
    )

    it.scopedLive(
      "mesh: registered under its id with its access classes; its typed errors, bad payloads, unknown methods",
      onNode(() =>
        Effect.gen(function* () {
          const { registry, client } = yield* startPlugin(loader)

          const registration = Option.getOrThrow(registry.lookup("conformance"))
          assert.strictEqual(registration.owner, pluginId)
          const access = Object.fromEntries(
            ["pid", "store", "denied", "nope"].map((method) => [
              method,
              ServiceContract.accessOf(registration.contract, method)
            ])
          )
          assert.deepStrictEqual(access, { pid: "read", store: "write", denied: "admin", nope: undefined })

          const failed = yield* Effect.flip(client.fail({ why: "because" }))
          assert.instanceOf(failed, ConformanceError)
          assert.strictEqual((failed as ConformanceError).why, "because")

          const badPayload = yield* Effect.flip(
            registry.call(Principal.operator, "conformance", "store", { key: 1 })
          )
          assert.strictEqual(badPayload._tag, "InvalidPayload")
          const unknown = yield* Effect.flip(registry.call(Principal.operator, "conformance", "nope", {}))
          assert.strictEqual(unknown._tag, "MethodNotFound")
        })
      )
    )

    it.scopedLive(
      "lifecycle: stop runs its finalizers and removes its service, hooks and subscription; start and restart work",
      onNode(() =>
        Effect.gen(function* () {
          const bus = yield* EventBus
          const storage = yield* Storage
          const registry = yield* ServiceRegistry
          const manager = yield* PluginManager
          const conf = yield* record("conf.*")
          const lifecycle = yield* record("plugin.*")
          const baseline = yield* subscribers
          yield* loader.register({ label: loader.name })
          yield* manager.start(pluginId)
          const client = registry.client(Principal.operator, Conformance)
          const firstPid = yield* client.pid()
          assert.strictEqual(yield* subscribers, baseline + 1, "its content.* subscription")

          yield* manager.stop(pluginId)
          const afterStop = yield* manager.get(pluginId)
          assert.strictEqual(afterStop.state, "stopped")
          assert.strictEqual(afterStop.pid, null)
          assert.strictEqual(
            afterStop.lastExit?.reason ?? null,
            loader.kind === "subprocess" ? "clean" : null
          )
          const stopped = yield* awaitEvent(conf, "conf.stopped")
          assert.strictEqual(stopped.source, pluginId)
          assert.deepStrictEqual(stopped.data, { label: loader.name, starts: 1 })
          assert.strictEqual(yield* hostValue(namespace, "lifecycle/stopped"), "1")
          yield* awaitEvent(lifecycle, "plugin.stopped")
          assert.deepStrictEqual(
            lifecycle.map((event) => event.type),
            ["plugin.registered", "plugin.starting", "plugin.running", "plugin.stopping", "plugin.stopped"]
          )
          assert.isTrue(Option.isNone(registry.lookup("conformance")))
          assert.deepStrictEqual(yield* hooksOf(pluginId), [])
          yield* eventually(
            Effect.map(subscribers, (n) => (n === baseline ? true : undefined)),
            "its subscription ended"
          )
          // Its service is declared in its manifest: a stopped provider is unavailable (503), not unknown (404).
          const gone = yield* Effect.flip(client.pid())
          assert.strictEqual(gone._tag, "PluginUnavailable")
          assert.strictEqual((gone as { readonly state: string }).state, "stopped")
          // Its veto went with it.
          yield* storage.store("core", "x", "deny/while-stopped", bytes("ok"))
          yield* bus.publish({ type: "content.late", source: "core" })
          // Stopping again is a no-op.
          yield* manager.stop(pluginId)
          assert.strictEqual((yield* manager.get(pluginId)).state, "stopped")

          yield* manager.start(pluginId)
          assert.strictEqual((yield* manager.get(pluginId)).state, "running")
          const again = yield* awaitEvent(
            conf,
            "conf.started",
            (event) => (event.data as { starts: number }).starts === 2
          )
          assert.strictEqual(again.source, pluginId)
          assert.strictEqual(Option.getOrThrow(registry.lookup("conformance")).owner, pluginId)
          assert.deepStrictEqual(yield* hooksOf(pluginId), ["storage.after.write", "storage.before.write"])
          assert.strictEqual(yield* subscribers, baseline + 1)
          yield* bus.publish({ type: "content.fresh", source: "core" })
          yield* eventually(hostValue(namespace, "received/content.fresh"), "content.fresh after the start")
          assert.isUndefined(yield* hostValue(namespace, "received/content.late"), "published while stopped")
          const secondPid = yield* client.pid()
          if (loader.kind === "subprocess") assert.notStrictEqual(secondPid, firstPid)

          yield* manager.restart(pluginId)
          const restarted = yield* manager.get(pluginId)
          assert.strictEqual(restarted.state, "running")
          assert.strictEqual(restarted.restarts, 1)
          yield* awaitEvent(conf, "conf.stopped", (event) => (event.data as { starts: number }).starts === 2)
          yield* awaitEvent(conf, "conf.started", (event) => (event.data as { starts: number }).starts === 3)
          assert.strictEqual(yield* hostValue(namespace, "lifecycle/starts"), "3")
          assert.deepStrictEqual(yield* hooksOf(pluginId), ["storage.after.write", "storage.before.write"])
          assert.strictEqual(yield* subscribers, baseline + 1)
          if (loader.kind === "subprocess") assert.notStrictEqual(yield* client.pid(), secondPid)
        })
      )
    )

    it.scopedLive(
      "a config its schema rejects fails that plugin with InvalidConfig; the node carries on",
      onNode(() =>
        Effect.gen(function* () {
          const manager = yield* PluginManager
          const registry = yield* ServiceRegistry
          yield* loader.register({ label: 42 })
          const error = yield* Effect.flip(manager.start(pluginId))
          assert.strictEqual(error._tag, "InvalidConfig")
          assert.deepStrictEqual(
            (error as Errors.InvalidConfig).issues.map((issue) => issue.path),
            ["label"]
          )
          const info = yield* manager.get(pluginId)
          assert.strictEqual(info.state, "failed")
          assert.include(info.error, "label")
          assert.strictEqual(info.pid, null)
          assert.isTrue(Option.isNone(registry.lookup("conformance")))
          assert.deepStrictEqual(yield* hooksOf(pluginId), [])
          assert.isUndefined(yield* hostValue(namespace, "lifecycle/starts"), "no plugin code ran")
          const node = yield* registry.call(Principal.operator, "node", "info", undefined)
          assert.isObject(node)
        })
      )
    )

    it.scopedLive(
      "a call in flight when it is stopped settles promptly: it completes, or fails with PluginUnavailable",
      onNode(() =>
        Effect.gen(function* () {
          const hooks = yield* HookRegistry
          const calls: Array<string> = []
          yield* hooks.register("service.before.call", "conformance-test", (call) =>
            Effect.sync(() => {
              calls.push((call as { method: string }).method)
            })
          )
          const { manager, client } = yield* startPlugin(loader)
          const inFlight = yield* Effect.fork(Effect.exit(client.sleep({ millis: 1000 })))
          yield* eventually(
            Effect.sync(() => (calls.includes("sleep") ? true : undefined)),
            "the call reached the mesh"
          )
          // Answered after the sleep request was read: it is with the plugin.
          yield* client.pid()
          yield* manager.stop(pluginId)
          const settled = yield* Fiber.join(inFlight).pipe(Effect.timeoutOption("10 seconds"))
          assert.isTrue(Option.isSome(settled), "settled long before the 30 s call timeout")
          const exit = Option.getOrThrow(settled)
          if (Exit.isFailure(exit)) {
            const failure = Cause.failureOption(exit.cause)
            assert.strictEqual(Option.isSome(failure) ? failure.value._tag : "defect", "PluginUnavailable")
          }
        })
      )
    )

    it.scopedLive(
      "interrupting a caller interrupts the plugin's handler: its finalizer runs, the plugin keeps serving",
      onNode(() =>
        Effect.gen(function* () {
          const { client } = yield* startPlugin(loader)
          const held = yield* Effect.fork(client.hold({ key: "held/1" }))
          // Answered after the hold request was read: the plugin is in its handler.
          yield* Effect.yieldNow()
          yield* client.pid()
          assert.isNull(held.unsafePoll())
          yield* Fiber.interrupt(held)
          const written = yield* eventually(hostValue(namespace, "held/1"), "the handler's finalizer ran")
          assert.strictEqual(written, "interrupted")
          assert.strictEqual((yield* client.settings()).label, loader.name)
        })
      )
    )

    it.scopedLive(
      "interrupting a caller interrupts the host-side handler of the plugin's own context call",
      onNode(() =>
        Effect.gen(function* () {
          const registry = yield* ServiceRegistry
          const started = yield* Deferred.make<void>()
          const interrupted = yield* Deferred.make<void>()
          // A service on the host that never answers and says when it is interrupted.
          const Holder = ServiceContract.make(
            "conf-holder",
            RpcGroup.make(ServiceContract.read(Rpc.make("wait")))
          )
          yield* registry.register(
            Holder,
            ServiceContract.toDispatch(
              ServiceContract.implement(Holder, {
                wait: () =>
                  Deferred.succeed(started, undefined).pipe(
                    Effect.zipRight(Effect.never),
                    Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined))
                  )
              }),
              "com.example.holder"
            ),
            "com.example.holder"
          )
          const { client } = yield* startPlugin(loader)
          // The host calls the plugin, whose handler calls the holder through its Services.
          const relayed = yield* Effect.fork(client.relay({ service: "conf-holder", method: "wait" }))
          yield* Deferred.await(started).pipe(Effect.timeout("10 seconds"))
          yield* Fiber.interrupt(relayed)
          // Across both boundaries: the plugin's handler, then its pending call to the host.
          yield* Deferred.await(interrupted).pipe(Effect.timeout("10 seconds"))
          assert.strictEqual((yield* client.settings()).label, loader.name)
        })
      ),
      30_000
    )

    if (loader.kind === "subprocess") {
      it.scopedLive(
        "its own process: a SIGKILL is observed, in-flight calls fail typed, it comes back with a new pid",
        onNode(() =>
          Effect.gen(function* () {
            const storage = yield* Storage
            const registry = yield* ServiceRegistry
            const { manager, client, conf, lifecycle } = yield* startPlugin(loader)
            const baseline = yield* subscribers

            const before = yield* manager.get(pluginId)
            const pid = before.pid!
            assert.isNumber(pid)
            assert.notStrictEqual(pid, process.pid)
            assert.strictEqual(yield* client.pid(), pid)
            assert.isTrue(isAlive(pid))

            const inFlight = yield* Effect.fork(client.sleep({ millis: 20_000 }))
            // Answered after the sleep request was read: it is in flight in the plugin.
            assert.strictEqual(yield* client.pid(), pid)
            process.kill(pid, "SIGKILL")

            const failure = yield* Effect.flip(Fiber.join(inFlight))
            assert.strictEqual(failure._tag, "PluginUnavailable")
            assert.strictEqual((failure as Errors.PluginUnavailable).pluginId, pluginId)

            const after = yield* eventually(
              Effect.map(manager.get(pluginId), (info) =>
                info.state === "running" && info.pid !== null && info.pid !== pid ? info : undefined
              ),
              "restarted with a new pid"
            )
            assert.isFalse(isAlive(pid))
            assert.notStrictEqual(after.pid, process.pid)
            assert.strictEqual(after.restarts, 1)
            assert.deepStrictEqual(
              { reason: after.lastExit?.reason, signal: after.lastExit?.signal },
              { reason: "killed", signal: "SIGKILL" }
            )
            yield* awaitEvent(lifecycle, "plugin.running", (event) => lifecycle.indexOf(event) > 3)
            assert.deepStrictEqual(
              lifecycle.map((event) => event.type),
              [
                "plugin.registered",
                "plugin.starting",
                "plugin.running",
                "plugin.restarting",
                "plugin.starting",
                "plugin.running"
              ]
            )
            const restarting = lifecycle[3]!.data as { reason: string }
            assert.include(restarting.reason, "killed")
            assert.strictEqual(yield* client.pid(), after.pid)
            yield* awaitEvent(
              conf,
              "conf.started",
              (event) => (event.data as { starts: number }).starts === 2
            )

            // The new process holds exactly what the old one did: one subscription, two hooks, its service.
            assert.strictEqual(yield* subscribers, baseline)
            assert.deepStrictEqual(yield* hooksOf(pluginId), ["storage.after.write", "storage.before.write"])
            const vetoed = yield* Effect.flip(storage.store("core", "x", "deny/2", bytes("no")))
            assert.strictEqual((vetoed as Errors.HookVetoed).by, pluginId)

            // The host never noticed more than that.
            yield* storage.store("core", "x", "host/ok", bytes("fine"))
            assert.strictEqual(yield* hostValue("x", "host/ok"), "fine")
            assert.isObject(yield* registry.call(Principal.operator, "node", "info", undefined))
          })
        )
      )
    }
  })
}
