/** Whole in-memory nodes on libp2p's memory transport, each running the sync plugin. */

import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as BlackholeNode from "@blackhole/core/BlackholeNode"
import { EventBus } from "@blackhole/core/EventBus"
import { HookRegistry } from "@blackhole/core/HookRegistry"
import * as Identity from "@blackhole/core/Identity"
import { P2P } from "@blackhole/core/P2P"
import { PluginManager } from "@blackhole/core/PluginManager"
import * as Principal from "@blackhole/core/Principal"
import { ServiceRegistry } from "@blackhole/core/ServiceRegistry"
import { Storage } from "@blackhole/core/Storage"
import * as StorageBackend from "@blackhole/core/StorageBackend"
import * as SubprocessLoader from "@blackhole/core/SubprocessLoader"
import type { Event } from "@blackhole/sdk/Event"
import * as PluginManifest from "@blackhole/sdk/PluginManifest"
import type * as ServiceContract from "@blackhole/sdk/ServiceContract"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { pluginId, Sync } from "../src/contract.js"
import sync from "../src/index.js"

/** The plugin package: what a subprocess loader runs (its built dist/ and plugin.json). */
export const packageDir = fileURLToPath(new URL("..", import.meta.url))

/** The namespace the tests sync. */
export const namespace = "shared"

/** What the default node config grants the plugin. */
export const grants = ["p2p:protocol:sync", "service:p2p:send", "service:storage:write"]

const encoder = new TextEncoder()
const decoder = new TextDecoder()
/** UTF-8 bytes of `text`. */
export const bytes = (text: string): Uint8Array => encoder.encode(text)

/** Polls `probe` until it yields a value (bounded: 20 s), for asynchronous effects in live tests. */
export const eventually = <A, E, R>(probe: Effect.Effect<A | undefined, E, R>, what: string) =>
  Effect.gen(function* () {
    for (let i = 0; i < 1000; i++) {
      const value = yield* probe
      if (value !== undefined) return value
      yield* Effect.sleep("20 millis")
    }
    return yield* Effect.dieMessage(`not reached within 20 s: ${what}`)
  })

/** A running node and the test's handles on it. */
export interface TestNode {
  readonly name: string
  readonly nodeId: string
  readonly p2p: P2P.Service
  readonly storage: Storage["Type"]
  readonly manager: PluginManager["Type"]
  readonly hooks: HookRegistry["Type"]
  /** The plugin's service, called as the operator. */
  readonly sync: ServiceContract.Client<typeof Sync>
  /** Every `sync.*` and `p2p.peer.*` event on the node's bus since it started. */
  readonly events: Array<Event>
  /** Stops the node (plugins, P2P) as a shutdown would. */
  readonly close: Effect.Effect<void>
  /** Writes through the node's core storage, as another plugin or the operator would. */
  readonly put: (key: string, value: string) => Effect.Effect<void>
  readonly remove: (key: string) => Effect.Effect<void>
  /** The synced namespace as it is now: key → value, sorted by key. */
  readonly contents: Effect.Effect<ReadonlyArray<readonly [string, string]>>
}

/** How to build a test node. */
export interface NodeOptions {
  readonly name: string
  /** Its storage: keep one across restarts to model a node's disk. Default a fresh one. */
  readonly backend?: StorageBackend.StorageBackend.Service
  /** Its key (32 bytes): the same seed gives the same node id after a restart. */
  readonly seed?: Uint8Array
  /** The plugin's config, over the tests' defaults. */
  readonly config?: Record<string, unknown>
  /** Registered but not started (start it with `manager.start`). */
  readonly syncDisabled?: boolean
  /** Run the plugin in its own process from the built package, as a discovered plugin runs. */
  readonly subprocess?: boolean
}

/** A seed for `Identity.layerMemory`: `n` repeated. */
export const seed = (n: number): Uint8Array => new Uint8Array(32).fill(n)

/** Starts a node in its own Scope (closed with `close`, or at the latest with the caller's Scope). */
export const startNode = (options: NodeOptions): Effect.Effect<TestNode, never, Scope.Scope> =>
  Effect.gen(function* () {
    const outer = yield* Effect.scope
    const scope = yield* Scope.fork(outer, ExecutionStrategy.sequential)
    const config = { namespace, antiEntropyIntervalMillis: 60_000, ...options.config }
    const node = BlackholeNode.layerWith({
      environment: "test",
      p2p: { transport: "memory" },
      plugins: options.subprocess === true ? [] : [sync],
      grants: { [pluginId]: grants },
      pluginConfig: { [pluginId]: config },
      ...(options.syncDisabled === true ? { disabled: [pluginId] } : {})
    }).pipe(
      Layer.provideMerge(
        Layer.mergeAll(
          Identity.layerMemory(options.seed === undefined ? {} : { seed: options.seed }),
          options.backend === undefined
            ? StorageBackend.layerMemory
            : Layer.succeed(StorageBackend.StorageBackend, options.backend)
        )
      ),
      Layer.orDie
    )
    const context = yield* Layer.buildWithScope(node, scope)
    const services = Effect.gen(function* () {
      const p2p = yield* Effect.serviceOption(P2P)
      if (Option.isNone(p2p)) return yield* Effect.dieMessage("the node has no P2P service")
      return {
        p2p: p2p.value,
        storage: yield* Storage,
        manager: yield* PluginManager,
        registry: yield* ServiceRegistry,
        bus: yield* EventBus,
        hooks: yield* HookRegistry
      }
    }).pipe(Effect.provide(context))
    const { p2p, storage, manager, registry, bus, hooks } = yield* services
    if (options.subprocess === true) {
      const manifest = yield* PluginManifest.decodeJson(
        fs.readFileSync(path.join(packageDir, "plugin.json"), "utf8"),
        packageDir
      ).pipe(Effect.orDie)
      yield* manager
        .registerWith(manifest, SubprocessLoader.make({ directory: packageDir, manifest }), {
          config,
          restart: { policy: "never" }
        })
        .pipe(Effect.orDie)
      if (options.syncDisabled !== true) yield* manager.start(pluginId).pipe(Effect.orDie)
    }
    const events: Array<Event> = []
    for (const pattern of ["sync.*", "p2p.peer.*"]) {
      const subscription = yield* bus.subscribe(pattern, { capacity: 100_000 }).pipe(Scope.extend(scope))
      yield* subscription.stream.pipe(
        Stream.runForEach((event) => Effect.sync(() => events.push(event))),
        Effect.forkIn(scope)
      )
    }
    return {
      name: options.name,
      nodeId: p2p.peerId,
      p2p,
      storage,
      manager,
      hooks,
      sync: registry.client(Principal.operator, Sync),
      events,
      close: Scope.close(scope, Exit.void),
      put: (key, value) => storage.store("operator", namespace, key, bytes(value)).pipe(Effect.orDie),
      remove: (key) => storage.delete("operator", namespace, key).pipe(Effect.asVoid, Effect.orDie),
      contents: Effect.gen(function* () {
        const keys = yield* storage.list(namespace, "")
        const entries: Array<readonly [string, string]> = []
        for (const key of keys) {
          const value = yield* storage.retrieve(namespace, key)
          if (Option.isSome(value)) entries.push([key, decoder.decode(value.value)])
        }
        return entries
      }).pipe(Effect.orDie)
    } satisfies TestNode
  })

/** Connects `a` to `b` (a dials b's listen address). */
export const connect = (a: TestNode, b: TestNode) =>
  Effect.gen(function* () {
    const [address] = yield* b.p2p.listenAddresses
    if (address === undefined) return yield* Effect.dieMessage(`${b.name} listens nowhere`)
    yield* a.p2p.dial(address).pipe(Effect.orDie)
  })

/** Waits until every node holds the same contents, and returns them. */
export const converged = (nodes: ReadonlyArray<TestNode>, what: string) =>
  eventually(
    Effect.gen(function* () {
      const all = yield* Effect.forEach(nodes, (node) => node.contents)
      const first = JSON.stringify(all[0])
      return all.every((contents) => JSON.stringify(contents) === first) ? (all[0] ?? []) : undefined
    }),
    what
  )

/** Events of `type` a node saw so far. */
export const eventsOf = (node: TestNode, type: string) => node.events.filter((event) => event.type === type)
