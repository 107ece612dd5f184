// Scenario `storage` (issue 4, item 7): puts/s and gets/s through Blackhole's SQLite storage vs
// better-sqlite3 used directly with the same pragmas, schema, statements and payload.
//
// Sides, each on its own database file in a temp dir, run in turn in every round:
//   raw      better-sqlite3 directly: prepared statements, WAL, synchronous=NORMAL (the baseline)
//   backend  StorageBackend.layerSqlite: the raw key/value backend, no hooks
//   storage  Storage service over that backend with HookRegistry.layer() and no hooks registered:
//            the path every node write takes in production
// Operations are sequential (one at a time). Each Effect side runs a whole batch of operations in
// one fiber per `runPromise` (Effects run at the edge only; per-call `runPromise` would measure
// the runtime's entry cost, not the storage layer's).
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import * as HookRegistry from "@blackhole/core/HookRegistry"
import * as StorageModule from "@blackhole/core/Storage"
import * as StorageBackend from "@blackhole/core/StorageBackend"
import Database from "better-sqlite3"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { alternate, batchThroughput, median, result, throughput } from "../lib/harness.mjs"

export const id = "storage"

const betterSqliteVersion = createRequire(import.meta.url)("better-sqlite3/package.json").version

const NAMESPACE = "bench"
const PAYLOAD_BYTES = 256
const KEYSPACE = 10_000
// Coprime with KEYSPACE: gets visit every key in a scattered order rather than index order.
const GET_STRIDE = 7919

// The same schema and statements as packages/core/src/internal/storageSqlite.ts.
const CREATE_TABLE =
  "CREATE TABLE IF NOT EXISTS kv (namespace TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, " +
  "PRIMARY KEY (namespace, key)) WITHOUT ROWID"
const UPSERT =
  "INSERT INTO kv (namespace, key, value) VALUES (?, ?, ?) " +
  "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value"
const SELECT_VALUE = "SELECT value FROM kv WHERE namespace = ? AND key = ?"

const SETTINGS = {
  quick: { count: 2_000, warmup: 1, reps: 3 },
  full: { count: 20_000, warmup: 2, reps: 9 }
}

const keys = Array.from({ length: KEYSPACE }, (_, i) => `key-${String(i).padStart(6, "0")}`)
const putKey = (round, count, i) => keys[(round * count + i) % KEYSPACE]
const getKey = (round, count, i) => keys[((round * count + i) * GET_STRIDE) % KEYSPACE]

const makePayload = () => {
  const payload = Buffer.alloc(PAYLOAD_BYTES)
  for (let i = 0; i < PAYLOAD_BYTES; i++) payload[i] = (i * 31 + 7) & 0xff
  return payload
}

const sameBytes = (a, b) =>
  a !== undefined && a.length === b.length && Buffer.compare(Buffer.from(a), b) === 0

/** better-sqlite3 used directly, set up the way the SQLite backend sets itself up. */
const openRaw = (filename, payload) => {
  const db = new Database(filename)
  db.pragma("journal_mode = WAL")
  db.pragma("synchronous = NORMAL")
  db.exec(CREATE_TABLE)
  const upsert = db.prepare(UPSERT)
  const select = db.prepare(SELECT_VALUE)
  db.transaction(() => {
    for (const key of keys) upsert.run(NAMESPACE, key, payload)
  })()
  if (!sameBytes(select.get(NAMESPACE, keys[0])?.value, payload)) throw new Error("raw: read-back mismatch")
  return {
    close: () => db.close(),
    put: (key) => upsert.run(NAMESPACE, key, payload),
    get: (key) => select.get(NAMESPACE, key).value
  }
}

/**
 * An Effect side: builds `layer` into a ManagedRuntime, fetches `tag`'s service, prefills the
 * keyspace through the service's own `batch`, and times whole loops of `store`/`retrieve`.
 */
const openEffect = async (layer, tag, storeOf, batchOf, payload) => {
  const runtime = ManagedRuntime.make(layer)
  try {
    const service = await runtime.runPromise(tag)
    const store = storeOf(service)
    await runtime.runPromise(
      batchOf(
        service,
        keys.map((key) => ({ _tag: "Put", namespace: NAMESPACE, key, value: payload }))
      )
    )
    const check = await runtime.runPromise(service.retrieve(NAMESPACE, keys[0]))
    if (check._tag !== "Some" || !sameBytes(check.value, payload))
      throw new Error("effect: read-back mismatch")
    const putLoop = (count, round) =>
      Effect.gen(function* () {
        for (let i = 0; i < count; i++) yield* store(putKey(round, count, i), payload)
      })
    const getLoop = (count, round) =>
      Effect.gen(function* () {
        for (let i = 0; i < count; i++) yield* service.retrieve(NAMESPACE, getKey(round, count, i))
      })
    return {
      close: () => runtime.dispose(),
      puts: (count, round) => runtime.runPromise(putLoop(count, round)),
      gets: (count, round) => runtime.runPromise(getLoop(count, round))
    }
  } catch (error) {
    await runtime.dispose()
    throw error
  }
}

export const run = async ({ quick, log }) => {
  const { count, warmup, reps } = quick ? SETTINGS.quick : SETTINGS.full
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "blackhole-bench-storage-"))
  const payload = makePayload()
  const opened = []
  try {
    const raw = openRaw(path.join(dir, "raw.db"), payload)
    opened.push(raw)
    const backend = await openEffect(
      StorageBackend.layerSqlite({ filename: path.join(dir, "backend.db") }),
      StorageBackend.StorageBackend,
      (service) => (key, value) => service.store(NAMESPACE, key, value),
      (service, ops) => service.batch(ops),
      payload
    )
    opened.push(backend)
    const storage = await openEffect(
      StorageModule.layerSqlite({ filename: path.join(dir, "storage.db") }).pipe(
        Layer.provide(HookRegistry.layer())
      ),
      StorageModule.Storage,
      (service) => (key, value) => service.store("bench", NAMESPACE, key, value),
      (service, ops) => service.batch("bench", ops),
      payload
    )
    opened.push(storage)

    const progress = (phase) => (round, warm) =>
      log(`storage ${phase}: round ${round + 1}/${warmup + reps}${warm ? " (warm-up)" : ""}`)

    const puts = await alternate({
      warmup,
      reps,
      onRound: progress("puts"),
      sides: [
        { name: "raw", run: (round) => throughput(count, (i) => void raw.put(putKey(round, count, i))) },
        { name: "backend", run: (round) => batchThroughput(count, (n) => backend.puts(n, round)) },
        { name: "storage", run: (round) => batchThroughput(count, (n) => storage.puts(n, round)) }
      ]
    })
    const gets = await alternate({
      warmup,
      reps,
      onRound: progress("gets"),
      sides: [
        { name: "raw", run: (round) => throughput(count, (i) => void raw.get(getKey(round, count, i))) },
        { name: "backend", run: (round) => batchThroughput(count, (n) => backend.gets(n, round)) },
        { name: "storage", run: (round) => batchThroughput(count, (n) => storage.gets(n, round)) }
      ]
    })

    const common = "in-process, no framing, 256 B, sandbox n/a"
    const baselineNotes =
      `baseline: better-sqlite3 ${betterSqliteVersion} direct ` +
      `(prepared statements, .run/.get), ${common}`
    const shape =
      `same file setup (WAL, synchronous=NORMAL), same kv table and statements; sequential ops, ` +
      `${KEYSPACE} prefilled keys (puts are upserts of existing keys); median of ${reps} rounds of ` +
      `${count} ops after ${warmup} warm-up, sides alternated in one process`
    const target = { on: "ratio", op: ">=", value: 0.5 }
    const row = (metric, samples, subject, subjectNotes) =>
      result({
        scenario: id,
        metric,
        unit: "ops/s",
        value: median(samples[subject]),
        baseline: median(samples.raw),
        baselineName: "better-sqlite3 direct",
        better: "higher",
        target,
        notes: `subject: ${subjectNotes}, ${common}; ${baselineNotes}; ${shape}`
      })
    const storageNotes =
      "Storage service (StorageBackend.layerSqlite + HookRegistry.layer(), no hooks registered), " +
      `${count} ops per runPromise in one fiber`
    const backendNotes = `StorageBackend.layerSqlite (no hooks), ${count} ops per runPromise in one fiber`
    return [
      row("puts-per-second", puts, "storage", storageNotes),
      row("gets-per-second", gets, "storage", storageNotes),
      row("backend-puts-per-second", puts, "backend", backendNotes),
      row("backend-gets-per-second", gets, "backend", backendNotes)
    ]
  } finally {
    for (const side of opened.reverse()) {
      try {
        await side.close()
      } catch (error) {
        log(`storage: closing a side failed: ${error}`)
      }
    }
    fs.rmSync(dir, { recursive: true, force: true })
  }
}
