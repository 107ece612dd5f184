/**
 * Storage routing: the node keeps chosen namespaces in storage plugins (e.g.
 * fs-store) and everything else in its own backend. `route` wraps the base
 * `StorageBackend` so each routed namespace's operations go to the backend a
 * storage plugin returned; the plugin manager's `attachment` makes a started
 * storage plugin's backend reachable for as long as it runs, so a namespace
 * whose plugin is not running fails with a `StorageError` that says so.
 *
 * Hooks and permissions are unaffected: `Storage` (hooks) and the sandboxes
 * (permissions) sit above the backend. What a plugin backend lacks, the
 * router provides at a weaker guarantee, documented where it applies:
 * `batch` over routed namespaces rolls back on failure but is not isolated,
 * and `snapshot` reads routed namespaces key by key, not at one instant.
 */
import { PluginFailure, StorageError } from "@blackhole/sdk/Errors"
import type * as Plugin from "@blackhole/sdk/Plugin"
import * as PluginManifest from "@blackhole/sdk/PluginManifest"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { Attachment } from "./PluginManager.js"
import * as StorageBackend from "./StorageBackend.js"

/** Which namespaces live in which storage plugin: namespace → plugin id (exact namespace names). */
export type Routes = Readonly<Record<string, string>>

/** Types that belong to the `StorageRouting` tag. */
export declare namespace StorageRouting {
  /** The table of running storage plugins' backends. */
  export interface Service {
    /** Makes a plugin's backend reachable until the Scope closes (the plugin stops). */
    readonly attach: (
      pluginId: string,
      backend: Plugin.StorageBackend
    ) => Effect.Effect<void, PluginFailure, Scope.Scope>
    /** The backend of a running storage plugin; none while it is not running. */
    readonly backend: (pluginId: string) => Option.Option<Plugin.StorageBackend>
    /** Ids of the storage plugins attached now, sorted. */
    readonly attached: Effect.Effect<ReadonlyArray<string>>
  }
}

/** The running storage plugins' backends, filled by {@link attachment}. */
export class StorageRouting extends Context.Tag("@blackhole/core/StorageRouting")<
  StorageRouting,
  StorageRouting.Service
>() {}

/** An empty table. */
export const make: Effect.Effect<StorageRouting.Service> = Effect.sync(() => {
  const backends = new Map<string, Plugin.StorageBackend>()
  return StorageRouting.of({
    attach: (pluginId, backend) =>
      Effect.suspend(() =>
        backends.has(pluginId)
          ? Effect.fail(
              new PluginFailure({
                pluginId,
                reason: "its storage backend is already attached (is a second instance running?)"
              })
            )
          : Effect.acquireRelease(
              Effect.sync(() => void backends.set(pluginId, backend)),
              // Only its own entry: a restarted instance may have attached meanwhile.
              () => Effect.sync(() => backends.get(pluginId) === backend && backends.delete(pluginId))
            )
      ),
    backend: (pluginId) => Option.fromNullable(backends.get(pluginId)),
    attached: Effect.sync(() => [...backends.keys()].sort())
  })
})

/** The table as a Layer (build it once per node: the manager's attachment and the router share it). */
export const layer: Layer.Layer<StorageRouting> = Layer.effect(StorageRouting, make)

/**
 * A plugin manager attachment: a started plugin that returned a storage backend is attached
 * to `routing` for as long as it runs, in process or as a subprocess (whose backend is a proxy).
 */
export const attachment =
  (routing: StorageRouting.Service): Attachment =>
  ({ manifest, handlers }) =>
    handlers.storage === undefined ? Effect.void : routing.attach(manifest.id, handlers.storage)

const isPluginId = Schema.is(PluginManifest.PluginId)

/**
 * The key a routed entry has in its plugin: `<namespace>\u0000<key>`, so one plugin can hold
 * several namespaces without their keys meeting (routed namespaces may not contain U+0000).
 */
export const qualify = (namespace: string, key: string): string => `${namespace}\u0000${key}`

/** Problems with a routes table, each saying what to change; empty when it is usable. */
export const validate = (routes: Routes): ReadonlyArray<string> =>
  Object.entries(routes).flatMap(([namespace, pluginId]) => [
    ...(namespace === "" ? [`the empty namespace cannot be routed: name a namespace`] : []),
    ...(namespace.includes("\u0000")
      ? [
          `namespace ${JSON.stringify(namespace)} contains U+0000, which routed keys use as a separator: rename it`
        ]
      : []),
    ...(isPluginId(pluginId)
      ? []
      : [
          `namespace ${JSON.stringify(namespace)} is routed to ${JSON.stringify(pluginId)}, which is not a plugin id (e.g. "dev.blackhole.fs-store")`
        ])
  ])

// Code point order, the order every backend lists in (UTF-16 units put U+10000 and above,
// as surrogates, before U+E000–U+FFFF: those two ranges swap).
const rank = (unit: number): number =>
  unit >= 0xd800 && unit <= 0xdfff ? unit + 0x2000 : unit >= 0xe000 ? unit - 0x800 : unit

/** Compares strings by Unicode code point. */
export const compare = (a: string, b: string): number => {
  const length = Math.min(a.length, b.length)
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i)
    const y = b.charCodeAt(i)
    if (x !== y) return rank(x) - rank(y)
  }
  return a.length - b.length
}

/**
 * A backend that sends each routed namespace's operations to its storage plugin (found in
 * `routing`) and everything else to `base`:
 *
 * - `store`, `retrieve`, `delete`, `list`: to the plugin, under the key `qualify(namespace, key)`
 *   (so several namespaces may share one plugin), with its `StorageFailure` (or defect)
 *   reported as a `StorageError` naming the namespace and plugin; while the plugin is not
 *   running, a `StorageError` that says so.
 * - `batch`: ops on `base` only go to `base.batch` unchanged (atomic). Ops on routed namespaces
 *   are applied one by one after the previous values are read; if any op (or the base part)
 *   fails or is interrupted, the routed keys are put back. That is all-or-nothing against
 *   failures, not against concurrent writers or a crash of the node mid-batch.
 * - `snapshot`: base entries at one instant, merged in (namespace, key) order with each routed
 *   namespace read key by key (a plugin backend has no snapshot), so a routed namespace is not
 *   point-in-time. Entries `base` still holds in a routed namespace are hidden, as they are to
 *   `retrieve`: move a namespace's data when routing it (e.g. back up, route, restore).
 * - `capacity`: `base` plus each running routed plugin; `totalBytes` is null if any is unbounded.
 */
export const route = (
  base: StorageBackend.StorageBackend.Service,
  routes: Routes,
  routing: StorageRouting.Service
): StorageBackend.StorageBackend.Service => {
  const table = new Map(Object.entries(routes))
  if (table.size === 0) return base
  const routedPlugins = [...new Set(table.values())].sort()

  /** The plugin holding `namespace`, failing while it is not running. */
  const backendFor = (operation: string, namespace: string, pluginId: string) =>
    Option.match(routing.backend(pluginId), {
      onSome: (backend) => Effect.succeed(backend),
      onNone: () =>
        Effect.fail(
          new StorageError({
            operation,
            reason: `namespace "${namespace}" is stored by plugin ${pluginId}, which is not running: start it (blackhole plugin start ${pluginId}) or remove the route from the node config`
          })
        )
    })

  /** Runs `f` against the plugin of a routed namespace, every failure a StorageError. */
  const viaPlugin = <A>(
    operation: string,
    namespace: string,
    pluginId: string,
    f: (backend: Plugin.StorageBackend) => Effect.Effect<A, Plugin.StorageFailure>
  ): Effect.Effect<A, StorageError> =>
    Effect.flatMap(backendFor(operation, namespace, pluginId), (backend) =>
      Effect.suspend(() => f(backend)).pipe(
        Effect.mapError(
          (failure) =>
            new StorageError({
              operation,
              reason: `namespace "${namespace}" (plugin ${pluginId}): ${failure.reason}`
            })
        ),
        Effect.catchAllDefect((defect) =>
          Effect.fail(
            new StorageError({
              operation,
              reason: `namespace "${namespace}" (plugin ${pluginId}) failed unexpectedly: ${defect instanceof Error ? defect.message : String(defect)}`
            })
          )
        ),
        // A call in flight when the plugin stops is interrupted with it; the caller is not (an
        // interruption of the caller itself never reaches this handler).
        Effect.catchAllCause((cause) =>
          Cause.isInterruptedOnly(cause)
            ? Effect.fail(
                new StorageError({
                  operation,
                  reason: `namespace "${namespace}" (plugin ${pluginId}): the plugin stopped during the call; try again once it runs`
                })
              )
            : Effect.failCause(cause)
        )
      )
    )

  const store = (namespace: string, key: string, value: Uint8Array) => {
    const pluginId = table.get(namespace)
    return pluginId === undefined
      ? base.store(namespace, key, value)
      : viaPlugin("store", namespace, pluginId, (backend) => backend.store(qualify(namespace, key), value))
  }
  const retrieve = (namespace: string, key: string) => {
    const pluginId = table.get(namespace)
    return pluginId === undefined
      ? base.retrieve(namespace, key)
      : viaPlugin("retrieve", namespace, pluginId, (backend) =>
          Effect.map(backend.retrieve(qualify(namespace, key)), Option.fromNullable)
        )
  }
  const remove = (namespace: string, key: string) => {
    const pluginId = table.get(namespace)
    return pluginId === undefined
      ? base.delete(namespace, key)
      : viaPlugin("delete", namespace, pluginId, (backend) => backend.delete(qualify(namespace, key)))
  }
  const list = (namespace: string, prefix: string) => {
    const pluginId = table.get(namespace)
    if (pluginId === undefined) return base.list(namespace, prefix)
    const qualified = qualify(namespace, prefix)
    const strip = namespace.length + 1
    return viaPlugin("list", namespace, pluginId, (backend) =>
      // Filtered and sorted here too: the node promises code point order whatever the plugin returns.
      Effect.map(backend.list(qualified), (keys) =>
        keys
          .filter((key) => key.startsWith(qualified))
          .map((key) => key.slice(strip))
          .sort(compare)
      )
    )
  }

  const batch = (ops: ReadonlyArray<StorageBackend.WriteOp>): Effect.Effect<void, StorageError> => {
    const routedOps = ops.filter((op) => table.has(op.namespace))
    if (routedOps.length === 0) return base.batch(ops)
    const baseOps = ops.filter((op) => !table.has(op.namespace))
    return Effect.gen(function* () {
      // The undo log: each routed key's value before the batch, read before anything is written.
      const touched = new Map<string, { readonly namespace: string; readonly key: string }>()
      for (const op of routedOps) touched.set(JSON.stringify([op.namespace, op.key]), op)
      const previous = yield* Effect.forEach(touched.values(), ({ namespace, key }) =>
        Effect.map(retrieve(namespace, key), (value) => ({ namespace, key, value }))
      )
      const rollback = Effect.forEach(
        previous,
        ({ namespace, key, value }) =>
          Option.match(value, {
            onNone: () => Effect.asVoid(remove(namespace, key)),
            onSome: (bytes) => store(namespace, key, bytes)
          }).pipe(
            Effect.catchAll((error) =>
              Effect.logError(
                `storage batch rollback could not restore ${namespace}/${key}: ${error.message}`
              )
            )
          ),
        { discard: true }
      )
      yield* Effect.forEach(
        routedOps,
        (op) => (op._tag === "Put" ? store(op.namespace, op.key, op.value) : remove(op.namespace, op.key)),
        { discard: true }
      ).pipe(
        Effect.zipRight(baseOps.length === 0 ? Effect.void : base.batch(baseOps)),
        Effect.onError(() => rollback)
      )
    }).pipe(Effect.withSpan("StorageRouting.batch"))
  }

  /** One routed namespace's entries, key by key. */
  const namespaceEntries = (namespace: string): Stream.Stream<StorageBackend.Entry, StorageError> => {
    const pluginId = table.get(namespace)!
    return Stream.unwrap(
      Effect.map(list(namespace, ""), (keys) =>
        Stream.fromIterable(keys).pipe(
          Stream.mapEffect((key) =>
            Effect.map(
              retrieve(namespace, key),
              Option.map((value) => ({ namespace, key, value }))
            )
          ),
          // Deleted since it was listed: not part of the snapshot.
          Stream.filterMap((entry) => entry)
        )
      )
    ).pipe(Stream.withSpan("StorageRouting.snapshot", { attributes: { namespace, plugin: pluginId } }))
  }

  const snapshot = (namespacePrefix?: string): Stream.Stream<StorageBackend.Entry, StorageError> =>
    Stream.suspend(() => {
      const prefix = namespacePrefix ?? ""
      const pending = [...table.keys()].filter((namespace) => namespace.startsWith(prefix)).sort(compare)
      const own = base.snapshot(namespacePrefix).pipe(Stream.filter((entry) => !table.has(entry.namespace)))
      if (pending.length === 0) return own
      // Base entries arrive sorted: each routed namespace goes in before the first base entry after it.
      const merged = Stream.chunks(own).pipe(
        Stream.flatMap((chunk) => {
          const parts: Array<Stream.Stream<StorageBackend.Entry, StorageError>> = []
          let run: Array<StorageBackend.Entry> = []
          for (const entry of chunk) {
            while (pending.length > 0 && compare(pending[0]!, entry.namespace) < 0) {
              if (run.length > 0) parts.push(Stream.fromIterable(run))
              run = []
              parts.push(namespaceEntries(pending.shift()!))
            }
            run.push(entry)
          }
          if (run.length > 0) parts.push(Stream.fromIterable(run))
          return Stream.concatAll(Chunk.fromIterable(parts))
        })
      )
      return Stream.concat(
        merged,
        Stream.suspend(() => Stream.concatAll(Chunk.fromIterable(pending.splice(0).map(namespaceEntries))))
      )
    })

  const capacity: Effect.Effect<StorageBackend.Capacity, StorageError> = Effect.gen(function* () {
    const own = yield* base.capacity
    let usedBytes = own.usedBytes
    let totalBytes = own.totalBytes
    for (const pluginId of routedPlugins) {
      const backend = routing.backend(pluginId)
      // A plugin that is not running holds bytes nobody can ask about now; its namespaces fail anyway.
      if (Option.isNone(backend)) continue
      const theirs = yield* viaPlugin("capacity", `(routed to ${pluginId})`, pluginId, (b) => b.capacity)
      usedBytes += theirs.usedBytes
      totalBytes = totalBytes === null || theirs.totalBytes === null ? null : totalBytes + theirs.totalBytes
    }
    return { usedBytes, totalBytes }
  })

  return StorageBackend.StorageBackend.of({
    store,
    retrieve,
    delete: remove,
    list,
    capacity,
    batch,
    snapshot
  })
}

/**
 * The node's backend with `routes` applied: wraps the `StorageBackend` it is given (provide the
 * base below it) using the shared `StorageRouting` table. Invalid routes fail the layer with a
 * `StorageError` listing every problem.
 */
export const layerBackend = (
  routes: Routes
): Layer.Layer<StorageBackend.StorageBackend, StorageError, StorageBackend.StorageBackend | StorageRouting> =>
  Layer.effect(
    StorageBackend.StorageBackend,
    Effect.gen(function* () {
      const problems = validate(routes)
      if (problems.length > 0) {
        return yield* new StorageError({ operation: "configure routes", reason: problems.join("; ") })
      }
      const base = yield* StorageBackend.StorageBackend
      const routing = yield* StorageRouting
      return route(base, routes, routing)
    })
  )
