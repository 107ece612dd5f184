/**
 * The raw key/value backend under the node's storage: bytes kept under `(namespace, key)`, with
 * no hooks and no permissions. The hook-running `Storage` service is built on top of it, so a
 * custom node swaps the backend without touching hooks or sandboxing.
 *
 * Keys and namespaces sort by Unicode code point (the byte order of their UTF-8 encoding, which
 * is how SQLite compares text); every implementation returns `list` and `snapshot` in that order.
 */
import type { StorageError } from "@blackhole/sdk/Errors"
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as memory from "./internal/storageMemory.js"
import * as sqlite from "./internal/storageSqlite.js"

/** One stored value, as a snapshot yields it. */
export interface Entry {
  readonly namespace: string
  readonly key: string
  readonly value: Uint8Array
}

/** One write of an atomic `batch`; ops apply in order, so a later op on the same key wins. */
export type WriteOp =
  | { readonly _tag: "Put"; readonly namespace: string; readonly key: string; readonly value: Uint8Array }
  | { readonly _tag: "Delete"; readonly namespace: string; readonly key: string }

/** How much the backend holds and may hold; `totalBytes` is null when nothing bounds it. */
export interface Capacity {
  readonly usedBytes: number
  readonly totalBytes: number | null
}

/** Types that belong to the `StorageBackend` tag. */
export declare namespace StorageBackend {
  /** The backend's operations: no requirements, and every failure is a `StorageError`. */
  export interface Service {
    /** Writes `value` under the key, replacing any previous value; once acknowledged, a persistent backend keeps it. */
    readonly store: (namespace: string, key: string, value: Uint8Array) => Effect.Effect<void, StorageError>
    /** Reads the value under the key; the returned bytes are the caller's to mutate. */
    readonly retrieve: (
      namespace: string,
      key: string
    ) => Effect.Effect<Option.Option<Uint8Array>, StorageError>
    /** Removes the key; succeeds with whether it existed. */
    readonly delete: (namespace: string, key: string) => Effect.Effect<boolean, StorageError>
    /** The namespace's keys that start with `prefix`, in code point order. */
    readonly list: (namespace: string, prefix: string) => Effect.Effect<ReadonlyArray<string>, StorageError>
    /** Bytes in use and, where known, the most the backend can hold. */
    readonly capacity: Effect.Effect<Capacity, StorageError>
    /** Applies every op or none: a failure part-way leaves the store as it was. */
    readonly batch: (ops: ReadonlyArray<WriteOp>) => Effect.Effect<void, StorageError>
    /**
     * Every entry whose namespace starts with `namespacePrefix` (default: all), sorted by
     * (namespace, key), as of the moment the stream starts; writes made while it is consumed are
     * not seen. Entries arrive in chunks, never all loaded at once.
     */
    readonly snapshot: (namespacePrefix?: string) => Stream.Stream<Entry, StorageError>
  }
}

/** The node's raw key/value store; `Storage` adds hooks and namespacing on top of it. */
export class StorageBackend extends Context.Tag("@blackhole/core/StorageBackend")<
  StorageBackend,
  StorageBackend.Service
>() {}

/** Options of the in-memory backend. */
export interface MemoryOptions {
  /** Refuse writes that would make `usedBytes` exceed this (reported as `totalBytes`); unbounded if absent. */
  readonly maxBytes?: number
}

/** Options of the SQLite backend. */
export interface SqliteOptions {
  /** The database file (e.g. `<data>/node.db`); created if missing. Must be a real file: snapshots open it again. */
  readonly filename: string
  /**
   * The `synchronous` pragma, default "NORMAL". In WAL mode, NORMAL hands each commit to the OS
   * without fsync: every acknowledged write survives a crash of the process, and a power loss may
   * drop the last few commits (never corrupting the file). FULL fsyncs the WAL on every commit, so
   * acknowledged writes also survive power loss, at the cost of one fsync per write.
   */
  readonly synchronous?: "NORMAL" | "FULL"
  /** Cap the database at this many bytes (SQLite `max_page_count`); a write past it fails as disk-full would. */
  readonly maxBytes?: number
}

/** Builds an in-memory backend: an immutable sorted tree in a Ref, so snapshots cost nothing. */
export const makeMemory: (options?: MemoryOptions) => Effect.Effect<StorageBackend.Service> = memory.make

/** In-memory backend without a size limit, for tests and throwaway nodes. */
export const layerMemory: Layer.Layer<StorageBackend> = Layer.effect(StorageBackend, makeMemory())

/** Opens a SQLite (WAL) backend; the database is closed when the scope closes. */
export const makeSqlite: (
  options: SqliteOptions
) => Effect.Effect<StorageBackend.Service, StorageError, Scope.Scope> = sqlite.make

/** SQLite (WAL) backend in one file: what a real node uses for `<data>/node.db`. */
export const layerSqlite = (options: SqliteOptions): Layer.Layer<StorageBackend, StorageError> =>
  Layer.scoped(StorageBackend, makeSqlite(options))
