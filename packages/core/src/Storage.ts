/**
 * The node's storage: a key/value backend (in memory or SQLite) with the
 * storage hooks run around every write and delete. `before` hooks may veto;
 * `after` hooks observe. Permission checks belong to the callers' views
 * (a plugin's own namespace, the core `storage` mesh service).
 */
import type { HookVetoed, StorageError } from "@blackhole/sdk/Errors"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import type * as Stream from "effect/Stream"
import { HookRegistry } from "./HookRegistry.js"
import * as StorageBackend from "./StorageBackend.js"

/** The storage service; `principal` names the writer in hook payloads. */
export class Storage extends Context.Tag("@blackhole/core/Storage")<
  Storage,
  {
    readonly store: (
      principal: string,
      namespace: string,
      key: string,
      value: Uint8Array
    ) => Effect.Effect<void, HookVetoed | StorageError>
    readonly retrieve: (
      namespace: string,
      key: string
    ) => Effect.Effect<Option.Option<Uint8Array>, StorageError>
    /** Succeeds with whether the key existed. */
    readonly delete: (
      principal: string,
      namespace: string,
      key: string
    ) => Effect.Effect<boolean, HookVetoed | StorageError>
    readonly list: (namespace: string, prefix: string) => Effect.Effect<ReadonlyArray<string>, StorageError>
    readonly capacity: Effect.Effect<StorageBackend.Capacity, StorageError>
    /** Atomic: every `before` hook of every op runs first; any veto aborts the whole batch. */
    readonly batch: (
      principal: string,
      ops: ReadonlyArray<StorageBackend.WriteOp>
    ) => Effect.Effect<void, HookVetoed | StorageError>
    /** A consistent point-in-time view, streamed. */
    readonly snapshot: (namespacePrefix?: string) => Stream.Stream<StorageBackend.Entry, StorageError>
  }
>() {}

const hookPayload = (principal: string, op: StorageBackend.WriteOp) =>
  op._tag === "Put"
    ? { namespace: op.namespace, key: op.key, value: op.value, principal }
    : { namespace: op.namespace, key: op.key, principal }

const hookName = (phase: "before" | "after", op: StorageBackend.WriteOp) =>
  `storage.${phase}.${op._tag === "Put" ? "write" : "delete"}`

/** Storage over whichever backend is provided. */
export const layer: Layer.Layer<Storage, never, StorageBackend.StorageBackend | HookRegistry> = Layer.effect(
  Storage,
  Effect.gen(function* () {
    const backend = yield* StorageBackend.StorageBackend
    const hooks = yield* HookRegistry
    return Storage.of({
      // No spans on store and delete: measured hot paths (a span costs ~25 µs a call, tracer or not).
      store: (principal, namespace, key, value) => {
        const payload = { namespace, key, value, principal }
        return hooks
          .run("storage.before.write", payload)
          .pipe(
            Effect.zipRight(backend.store(namespace, key, value)),
            Effect.zipRight(hooks.run("storage.after.write", payload))
          )
      },
      retrieve: backend.retrieve,
      delete: (principal, namespace, key) => {
        const payload = { namespace, key, principal }
        return hooks.run("storage.before.delete", payload).pipe(
          Effect.zipRight(backend.delete(namespace, key)),
          Effect.tap(() => hooks.run("storage.after.delete", payload))
        )
      },
      list: backend.list,
      capacity: backend.capacity,
      batch: (principal, ops) =>
        Effect.forEach(ops, (op) => hooks.run(hookName("before", op), hookPayload(principal, op)), {
          discard: true
        }).pipe(
          Effect.zipRight(backend.batch(ops)),
          Effect.zipRight(
            Effect.forEach(ops, (op) => hooks.run(hookName("after", op), hookPayload(principal, op)), {
              discard: true
            })
          ),
          Effect.withSpan("Storage.batch")
        ),
      snapshot: backend.snapshot
    })
  })
)

/** Storage in memory (tests, ephemeral nodes). */
export const layerMemory: Layer.Layer<Storage, never, HookRegistry> = layer.pipe(
  Layer.provide(StorageBackend.layerMemory)
)

/** Storage in SQLite at `filename` (WAL). */
export const layerSqlite = (options: { readonly filename: string }) =>
  layer.pipe(Layer.provide(StorageBackend.layerSqlite(options)))
