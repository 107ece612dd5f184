import * as fs from "node:fs/promises"
import * as path from "node:path"
import { StorageError } from "@blackhole/sdk/Errors"
import * as Reactivity from "@effect/experimental/Reactivity"
import type { Connection } from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import Database from "better-sqlite3"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { Entry, SqliteOptions, StorageBackend, WriteOp } from "../StorageBackend.js"

// Rows per snapshot page: large enough to amortise a query, small enough to keep memory flat.
const PAGE_ROWS = 500

const CREATE_TABLE =
  "CREATE TABLE IF NOT EXISTS kv (namespace TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, " +
  "PRIMARY KEY (namespace, key)) WITHOUT ROWID"
const UPSERT =
  "INSERT INTO kv (namespace, key, value) VALUES (?, ?, ?) " +
  "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value"
const SELECT_VALUE = "SELECT value FROM kv WHERE namespace = ? AND key = ?"
const DELETE = "DELETE FROM kv WHERE namespace = ? AND key = ? RETURNING 1"
const LIST_ALL = "SELECT key FROM kv WHERE namespace = ? ORDER BY key"
const LIST_FROM = "SELECT key FROM kv WHERE namespace = ? AND key >= ? ORDER BY key"
const LIST_RANGE = "SELECT key FROM kv WHERE namespace = ? AND key >= ? AND key < ? ORDER BY key"
const USED_BYTES =
  "SELECT (page_count - freelist_count) * page_size AS used " +
  "FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()"
// Keyset pagination over the primary key: each page starts after the last row of the one before.
const PAGE_COLUMNS = "SELECT namespace, key, value FROM kv WHERE "
const PAGE_ORDER = ` ORDER BY namespace, key LIMIT ${PAGE_ROWS}`
const FIRST_PAGE = `${PAGE_COLUMNS}namespace >= ?${PAGE_ORDER}`
const FIRST_PAGE_RANGE = `${PAGE_COLUMNS}namespace >= ? AND namespace < ?${PAGE_ORDER}`
const NEXT_PAGE = `${PAGE_COLUMNS}(namespace, key) > (?, ?)${PAGE_ORDER}`
const NEXT_PAGE_RANGE = `${PAGE_COLUMNS}(namespace, key) > (?, ?) AND namespace < ?${PAGE_ORDER}`

/**
 * The least string above every string that starts with `prefix`, in code point order (SQLite
 * compares UTF-8 bytes, which agrees), so a prefix becomes an index range `[prefix, end)`.
 * Undefined when nothing bounds the range: the empty prefix, or one made only of U+10FFFF.
 */
const prefixEnd = (prefix: string): string | undefined => {
  const codePoints = Array.from(prefix, (char) => char.codePointAt(0)!)
  while (codePoints.length > 0) {
    const last = codePoints.pop()!
    if (last < 0x10ffff) return String.fromCodePoint(...codePoints, last === 0xd7ff ? 0xe000 : last + 1)
  }
  return undefined
}

const describe = (cause: unknown): string => {
  if (cause instanceof Error) {
    const code = (cause as { readonly code?: unknown }).code
    return typeof code === "string" ? `${code}: ${cause.message}` : cause.message
  }
  return String(cause)
}

// The driver's error (SqliteError, with its SQLITE_* code) is the useful part, not SqlError's wrapper text.
const storageError =
  (operation: string) =>
  (error: SqlError): StorageError =>
    new StorageError({ operation, reason: describe(error.cause ?? error) })

// better-sqlite3 copies every BLOB into a Buffer with its own ArrayBuffer, so a plain Uint8Array
// view of it is already private to the caller (and compares equal to other Uint8Arrays).
const toBytes = (buffer: Uint8Array): Uint8Array =>
  new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)

/**
 * Opens a client and reserves its connection for the scope. SqliteClient has exactly one
 * connection; reserving it once lets calls use its prepared-statement cache directly instead of
 * paying for a Scope, statement compilation and a span per call.
 */
const connect = (
  operation: string,
  config: SqliteClient.SqliteClientConfig
): Effect.Effect<Connection, StorageError, Scope.Scope> =>
  SqliteClient.make(config).pipe(
    Effect.provideServiceEffect(Reactivity.Reactivity, Reactivity.make),
    // better-sqlite3 throws from its constructor (no such directory, not a database, ...) and the
    // client lets that escape as a defect; it is an ordinary storage failure here.
    Effect.catchAllDefect((defect) => Effect.fail(new StorageError({ operation, reason: describe(defect) }))),
    Effect.flatMap((client) => Effect.mapError(client.reserve, storageError(operation)))
  )

type Row = { readonly namespace: string; readonly key: string; readonly value: Uint8Array }

/** @internal */
export const make = (
  options: SqliteOptions
): Effect.Effect<StorageBackend.Service, StorageError, Scope.Scope> =>
  Effect.gen(function* () {
    const { filename } = options
    // A fresh data directory may not exist yet (the identity, created beside it, may not be made first).
    if (filename !== ":memory:") {
      yield* Effect.tryPromise({
        try: () => fs.mkdir(path.dirname(path.resolve(filename)), { recursive: true, mode: 0o700 }),
        catch: (error) =>
          new StorageError({
            operation: "open",
            reason: `cannot create the directory of ${filename}: ${String(error)}`
          })
      })
    }
    // The writer is better-sqlite3 itself: every call below is one synchronous statement (or one
    // synchronous transaction for a batch), so nothing can interleave with it and no lock is needed;
    // statements are prepared once. (@effect/sql's connection, used for snapshots, would look each
    // statement up in its prepare cache and need a lock to keep a batch's transaction exclusive.)
    const db = yield* Effect.acquireRelease(
      Effect.try({
        try: () => new Database(filename),
        catch: (cause) => new StorageError({ operation: "open", reason: describe(cause) })
      }),
      (db) => Effect.sync(() => db.close())
    )
    const sync = <A>(operation: string, f: () => A): Effect.Effect<A, StorageError> =>
      Effect.try({ try: f, catch: (cause) => new StorageError({ operation, reason: describe(cause) }) })

    yield* sync("open", () => {
      const mode = db.pragma("journal_mode = WAL", { simple: true })
      if (mode !== "wal") {
        // Without WAL, snapshots would block writers and NORMAL would not give the promised durability.
        throw new Error(`${filename} cannot use WAL (journal_mode is ${String(mode)})`)
      }
      // WAL + NORMAL survives any crash of the process (commits sit in the OS page cache);
      // FULL adds an fsync per commit and so survives power loss too. See SqliteOptions.synchronous.
      db.pragma(`synchronous = ${options.synchronous === "FULL" ? "FULL" : "NORMAL"}`)
      db.exec(CREATE_TABLE)
      if (options.maxBytes !== undefined) {
        const pageSize = Number(db.pragma("page_size", { simple: true }))
        // A per-connection limit; past it SQLite fails the write with SQLITE_FULL, like a full disk.
        db.pragma(`max_page_count = ${Math.max(1, Math.floor(options.maxBytes / pageSize))}`)
      }
    })
    const statements = yield* sync("open", () => ({
      upsert: db.prepare(UPSERT),
      select: db.prepare(SELECT_VALUE),
      remove: db.prepare(DELETE),
      listAll: db.prepare(LIST_ALL),
      listFrom: db.prepare(LIST_FROM),
      listRange: db.prepare(LIST_RANGE),
      used: db.prepare(USED_BYTES)
    }))
    // Binds the bytes without copying (better-sqlite3 binds Buffers as BLOBs).
    const blob = (value: Uint8Array) => Buffer.from(value.buffer, value.byteOffset, value.byteLength)
    const write = (op: WriteOp) =>
      op._tag === "Put"
        ? statements.upsert.run(op.namespace, op.key, blob(op.value))
        : statements.remove.all(op.namespace, op.key)
    // BEGIN IMMEDIATE … COMMIT, rolled back if any statement throws.
    const writeAll = db.transaction((ops: ReadonlyArray<WriteOp>) => {
      for (const op of ops) write(op)
    })

    const usedBytes = sync(
      "capacity",
      () => (statements.used.get() as { used?: number } | undefined)?.used ?? 0
    )
    const freeBytes = Effect.tryPromise({
      try: () => fs.statfs(path.dirname(path.resolve(filename))),
      catch: (cause) => new StorageError({ operation: "capacity", reason: describe(cause) })
    }).pipe(Effect.map((stats) => stats.bavail * stats.bsize))

    const snapshot = (namespacePrefix = ""): Stream.Stream<Entry, StorageError> =>
      Stream.unwrapScoped(
        Effect.gen(function* () {
          // A connection of its own: its read transaction pins one WAL snapshot while the writer
          // goes on, and concurrent snapshots never queue behind each other.
          const reader = yield* connect("snapshot", { filename, readonly: true, disableWAL: true })
          const read = (sql: string, params: ReadonlyArray<unknown>) =>
            Effect.mapError(reader.execute(sql, params, undefined), storageError("snapshot"))
          yield* Effect.acquireRelease(read("BEGIN", []), () => Effect.ignore(read("COMMIT", [])))
          const end = prefixEnd(namespacePrefix)
          const page = (after: Row | undefined): Effect.Effect<ReadonlyArray<Row>, StorageError> =>
            after === undefined
              ? end === undefined
                ? read(FIRST_PAGE, [namespacePrefix])
                : read(FIRST_PAGE_RANGE, [namespacePrefix, end])
              : end === undefined
                ? read(NEXT_PAGE, [after.namespace, after.key])
                : read(NEXT_PAGE_RANGE, [after.namespace, after.key, end])
          return Stream.paginateChunkEffect(undefined as Row | undefined, (after) =>
            Effect.map(page(after), (rows) => {
              const last = rows[rows.length - 1]
              const entries = Chunk.fromIterable(
                rows.map(
                  (row): Entry => ({ namespace: row.namespace, key: row.key, value: toBytes(row.value) })
                )
              )
              return [
                entries,
                rows.length < PAGE_ROWS || last === undefined ? Option.none() : Option.some(last)
              ]
            })
          )
        })
      )

    return {
      store: (namespace, key, value) =>
        sync("store", () => {
          statements.upsert.run(namespace, key, blob(value))
        }),
      retrieve: (namespace, key) =>
        sync("retrieve", () => {
          const row = statements.select.get(namespace, key) as { readonly value: Uint8Array } | undefined
          return row === undefined ? Option.none() : Option.some(toBytes(row.value))
        }),
      delete: (namespace, key) => sync("delete", () => statements.remove.all(namespace, key).length > 0),
      list: (namespace, prefix) =>
        sync("list", () => {
          const end = prefixEnd(prefix)
          const rows =
            prefix === ""
              ? statements.listAll.all(namespace)
              : end === undefined
                ? statements.listFrom.all(namespace, prefix)
                : statements.listRange.all(namespace, prefix, end)
          return (rows as ReadonlyArray<{ readonly key: string }>).map((row) => row.key)
        }),
      capacity: Effect.gen(function* () {
        const used = yield* usedBytes
        if (options.maxBytes !== undefined) return { usedBytes: used, totalBytes: options.maxBytes }
        // The disk is the limit: what is used plus what the filesystem still lets us write.
        return { usedBytes: used, totalBytes: used + (yield* freeBytes) }
      }),
      batch: (ops) => (ops.length === 0 ? Effect.void : sync("batch", () => writeAll.immediate(ops))),
      snapshot
    }
  })
