import * as fsSync from "node:fs"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import type { StorageError } from "@blackhole/sdk/Errors"
import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as StorageBackend from "../src/StorageBackend.js"

type Service = StorageBackend.StorageBackend.Service
type Options = { readonly maxBytes?: number }
type MakeLayer = (options: Options) => Layer.Layer<StorageBackend.StorageBackend, StorageError>

const tempDir: Effect.Effect<string, never, Scope.Scope> = Effect.acquireRelease(
  Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "bh-"))),
  (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true }))
)

const memoryLayer: MakeLayer = (options) =>
  Layer.effect(StorageBackend.StorageBackend, StorageBackend.makeMemory(options))

// Each build gets a fresh directory, removed after the database is closed (finalizers run in reverse).
const sqliteLayer: MakeLayer = (options) =>
  Layer.unwrapScoped(
    Effect.map(tempDir, (dir) =>
      StorageBackend.layerSqlite({ filename: path.join(dir, "node.db"), ...options })
    )
  )

const encoder = new TextEncoder()
const bytes = (text: string): Uint8Array => encoder.encode(text)
const text = (value: Uint8Array): string => new TextDecoder().decode(value)
const hex = (value: Uint8Array): string =>
  Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("hex")

// Code point order, computed independently of the implementations: UTF-8 bytes compare the same way.
const compareText = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b))
const compareEntries = (a: StorageBackend.Entry, b: StorageBackend.Entry): number =>
  compareText(a.namespace, b.namespace) || compareText(a.key, b.key)
const show = (entries: Iterable<StorageBackend.Entry>): Array<string> =>
  Array.from(entries, (e) => `${e.namespace} ${e.key} ${hex(e.value)}`)

// Deterministic pseudo-random numbers (mulberry32), so a failure replays identically.
const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const randomBytes = (length: number, seed: number): Uint8Array => {
  const next = prng(seed)
  return Uint8Array.from({ length }, () => Math.floor(next() * 256))
}

const put = (namespace: string, key: string, value: Uint8Array): StorageBackend.WriteOp => ({
  _tag: "Put",
  namespace,
  key,
  value
})
const del = (namespace: string, key: string): StorageBackend.WriteOp => ({ _tag: "Delete", namespace, key })

const collect = (stream: Stream.Stream<StorageBackend.Entry, StorageError>) =>
  Effect.map(Stream.runCollect(stream), Chunk.toReadonlyArray)

/** The one suite every backend must pass. */
const conformance = (name: string, makeLayer: MakeLayer) =>
  describe(name, () => {
    const withBackend = <A, E>(f: (backend: Service) => Effect.Effect<A, E>, options: Options = {}) =>
      Effect.flatMap(StorageBackend.StorageBackend, f).pipe(Effect.provide(makeLayer(options)))

    it.effect("stores, retrieves, overwrites and deletes", () =>
      withBackend((backend) =>
        Effect.gen(function* () {
          assert.isTrue(Option.isNone(yield* backend.retrieve("ns", "k")))
          yield* backend.store("ns", "k", bytes("one"))
          assert.strictEqual(text(Option.getOrThrow(yield* backend.retrieve("ns", "k"))), "one")
          yield* backend.store("ns", "k", bytes("two"))
          assert.strictEqual(text(Option.getOrThrow(yield* backend.retrieve("ns", "k"))), "two")
          assert.isTrue(yield* backend.delete("ns", "k"))
          assert.isFalse(yield* backend.delete("ns", "k"))
          assert.isTrue(Option.isNone(yield* backend.retrieve("ns", "k")))
        })
      )
    )

    it.effect("lists keys by prefix in code point order", () =>
      withBackend((backend) =>
        Effect.gen(function* () {
          // "\uE000" sorts after "😀" in UTF-16 but before it by code point; "\u{10FFFF}" has no successor.
          const keys = [
            "b",
            "a",
            "ab",
            "a/2",
            "a/10",
            "\uE000",
            "😀",
            "\u{10FFFF}",
            "\u{10FFFF}x",
            "a\u0000z",
            "c"
          ]
          for (const key of keys) yield* backend.store("n", key, bytes(key))
          yield* backend.store("n2", "a/3", bytes("other namespace"))
          assert.deepStrictEqual(yield* backend.list("n", ""), [...keys].sort(compareText))
          assert.deepStrictEqual(yield* backend.list("n", "a"), ["a", "a\u0000z", "a/10", "a/2", "ab"])
          assert.deepStrictEqual(yield* backend.list("n", "a/"), ["a/10", "a/2"])
          assert.deepStrictEqual(yield* backend.list("n", "\u{10FFFF}"), ["\u{10FFFF}", "\u{10FFFF}x"])
          assert.deepStrictEqual(yield* backend.list("n", "\uE000"), ["\uE000"])
          assert.deepStrictEqual(yield* backend.list("n", "zz"), [])
          assert.deepStrictEqual(yield* backend.list("missing", ""), [])
        })
      )
    )

    it.effect("keeps namespaces apart", () =>
      withBackend((backend) =>
        Effect.gen(function* () {
          yield* backend.store("a", "k", bytes("in a"))
          yield* backend.store("ab", "k", bytes("in ab"))
          yield* backend.store("b", "k2", bytes("in b"))
          assert.strictEqual(text(Option.getOrThrow(yield* backend.retrieve("a", "k"))), "in a")
          assert.strictEqual(text(Option.getOrThrow(yield* backend.retrieve("ab", "k"))), "in ab")
          assert.isTrue(Option.isNone(yield* backend.retrieve("a", "k2")))
          assert.deepStrictEqual(yield* backend.list("a", ""), ["k"])
          assert.isTrue(yield* backend.delete("a", "k"))
          assert.isFalse(yield* backend.delete("a", "k2"))
          assert.strictEqual(text(Option.getOrThrow(yield* backend.retrieve("ab", "k"))), "in ab")
          assert.deepStrictEqual(yield* backend.list("a", ""), [])
        })
      )
    )

    it.effect("round-trips binary values byte for byte and keeps them private", () =>
      withBackend((backend) =>
        Effect.gen(function* () {
          const values: Record<string, Uint8Array> = {
            every: Uint8Array.from({ length: 256 }, (_, i) => i),
            empty: new Uint8Array(0),
            large: randomBytes(1024 * 1024, 7),
            // A view into the middle of a bigger buffer: only the viewed bytes are the value.
            view: new Uint8Array(Uint8Array.from({ length: 64 }, (_, i) => 255 - i).buffer, 10, 20),
            buffer: Buffer.from([0, 1, 0, 0xff, 0])
          }
          for (const [key, value] of Object.entries(values)) yield* backend.store("bin", key, value)
          for (const [key, value] of Object.entries(values)) {
            const stored = Option.getOrThrow(yield* backend.retrieve("bin", key))
            assert.strictEqual(stored.byteLength, value.byteLength, key)
            assert.strictEqual(hex(stored), hex(value), key)
          }
          // Neither the caller's array nor a retrieved copy aliases the stored bytes.
          const mine = bytes("abc")
          yield* backend.store("bin", "mine", mine)
          mine[0] = 0x7a
          const first = Option.getOrThrow(yield* backend.retrieve("bin", "mine"))
          first[1] = 0x7a
          assert.strictEqual(text(Option.getOrThrow(yield* backend.retrieve("bin", "mine"))), "abc")
        })
      )
    )

    it.effect("applies a batch in order", () =>
      withBackend((backend) =>
        Effect.gen(function* () {
          yield* backend.store("b", "old", bytes("old"))
          yield* backend.batch([
            put("b", "x", bytes("1")),
            put("b", "y", bytes("2")),
            del("b", "x"),
            del("b", "old"),
            put("c", "z", bytes("3")),
            put("b", "y", bytes("2b")),
            del("b", "never-existed")
          ])
          yield* backend.batch([])
          assert.deepStrictEqual(yield* backend.list("b", ""), ["y"])
          assert.strictEqual(text(Option.getOrThrow(yield* backend.retrieve("b", "y"))), "2b")
          assert.strictEqual(text(Option.getOrThrow(yield* backend.retrieve("c", "z"))), "3")
        })
      )
    )

    // The last op needs more room than the store has (SQLite fails it with SQLITE_FULL, as on a
    // full disk); the earlier put and delete must be undone with it.
    it.effect("applies nothing of a batch whose later op fails", () =>
      withBackend(
        (backend) =>
          Effect.gen(function* () {
            yield* backend.store("b", "keep", bytes("kept"))
            const before = yield* backend.capacity
            assert.strictEqual(before.totalBytes, 64 * 1024)
            const error = yield* Effect.flip(
              backend.batch([
                put("b", "new", bytes("new")),
                del("b", "keep"),
                put("b", "huge", randomBytes(200_000, 1))
              ])
            )
            assert.strictEqual(error._tag, "StorageError")
            assert.strictEqual(error.operation, "batch")
            assert.deepStrictEqual(yield* backend.list("b", ""), ["keep"])
            assert.strictEqual(text(Option.getOrThrow(yield* backend.retrieve("b", "keep"))), "kept")
            assert.strictEqual((yield* backend.capacity).usedBytes, before.usedBytes)

            const full = yield* Effect.flip(backend.store("b", "huge", randomBytes(200_000, 2)))
            assert.strictEqual(full.operation, "store")
            // The backend is usable afterwards, and no write is left in a dangling transaction:
            // a snapshot (a separate reader in SQLite) sees only committed data.
            yield* backend.store("b", "after", bytes("after"))
            yield* backend.batch([put("b", "after2", bytes("after2"))])
            const entries = yield* collect(backend.snapshot())
            assert.deepStrictEqual(
              entries.map((e) => e.key),
              ["after", "after2", "keep"]
            )
          }),
        { maxBytes: 64 * 1024 }
      )
    )

    it.effect("snapshots all entries, or a namespace prefix, sorted and byte-exact", () =>
      withBackend((backend) =>
        Effect.gen(function* () {
          // More entries than one SQLite page (500), spread over namespaces on both sides of "p".
          const all: Array<StorageBackend.Entry> = []
          for (const namespace of ["p", "p2", "o", "q"]) {
            for (let i = 0; i < 300; i++) {
              all.push({ namespace, key: `k${i}`, value: randomBytes(i % 40, i) })
            }
          }
          yield* backend.batch(all.map((e) => put(e.namespace, e.key, e.value)))
          const expected = [...all].sort(compareEntries)
          assert.deepStrictEqual(show(yield* collect(backend.snapshot())), show(expected))
          assert.deepStrictEqual(
            show(yield* collect(backend.snapshot("p"))),
            show(expected.filter((e) => e.namespace.startsWith("p")))
          )
          assert.deepStrictEqual(show(yield* collect(backend.snapshot("x"))), [])
          // Two snapshots open at once do not wait for each other.
          const pairs = yield* Stream.runCollect(Stream.zip(backend.snapshot(), backend.snapshot()))
          assert.strictEqual(Chunk.size(pairs), all.length)
        })
      )
    )

    // A writer fiber commits batches without pause while the snapshot is read slowly (it waits
    // for two more batches after every 64 entries). Each batch also writes its sequence number to
    // m/seq, so the snapshot says which state it claims to be; replaying the writer's log up to
    // that number must reproduce the snapshot exactly. A snapshot that mixed pages from different
    // moments would not match any replayed state.
    it.effect("a snapshot is the state at its start while writers keep writing and deleting", () =>
      withBackend((backend) =>
        Effect.gen(function* () {
          const namespaces = ["n1", "n2", "n3"]
          const model = new Map<string, StorageBackend.Entry>()
          const apply = (op: StorageBackend.WriteOp) => {
            const id = `${op.namespace}\u0000${op.key}`
            if (op._tag === "Put") model.set(id, { namespace: op.namespace, key: op.key, value: op.value })
            else model.delete(id)
          }
          const initial = [put("m", "seq", bytes("0"))]
          for (const namespace of namespaces) {
            for (let i = 0; i < 1000; i++)
              initial.push(put(namespace, `k${i}`, bytes(`init ${namespace} ${i}`)))
          }
          yield* backend.batch(initial)
          for (const op of initial) apply(op)

          const log: Array<ReadonlyArray<StorageBackend.WriteOp>> = []
          const seq = yield* Ref.make(0)
          const random = prng(42)
          const writer = yield* Effect.fork(
            Effect.forever(
              Effect.gen(function* () {
                const s = log.length + 1
                const ops = [put("m", "seq", bytes(String(s)))]
                for (let j = 0; j < 4; j++) {
                  const namespace = namespaces[Math.floor(random() * namespaces.length)]!
                  // Keys up to k1199 so batches also create keys the initial state lacks.
                  const key = `k${Math.floor(random() * 1200)}`
                  ops.push(random() < 0.3 ? del(namespace, key) : put(namespace, key, bytes(`${s}.${j}`)))
                }
                log.push(ops)
                yield* backend.batch(ops)
                yield* Ref.set(seq, s)
                yield* Effect.yieldNow()
              })
            )
          )
          const awaitWriter = Effect.gen(function* () {
            const target = (yield* Ref.get(seq)) + 2
            for (let i = 0; i < 100_000 && (yield* Ref.get(seq)) < target; i++) yield* Effect.yieldNow()
          })

          const started = yield* Ref.get(seq)
          const snapshot = yield* collect(
            backend.snapshot().pipe(
              Stream.rechunk(64),
              Stream.mapChunksEffect((chunk) => Effect.as(awaitWriter, chunk))
            )
          )
          const finished = yield* Ref.get(seq)
          yield* Fiber.interrupt(writer)

          const claimed = Number(text(snapshot.find((e) => e.namespace === "m" && e.key === "seq")!.value))
          assert.isAtLeast(claimed, started)
          // Many commits landed while the snapshot was being read, or the test proved nothing.
          assert.isAtLeast(finished - claimed, 50)
          for (const ops of log.slice(0, claimed)) ops.forEach(apply)
          assert.deepStrictEqual(show(snapshot), show([...model.values()].sort(compareEntries)))
        })
      )
    )

    it.effect("reports capacity that grows and shrinks with the data", () =>
      Effect.gen(function* () {
        yield* withBackend((backend) =>
          Effect.gen(function* () {
            const before = yield* backend.capacity
            yield* backend.store("c", "big", randomBytes(256 * 1024, 3))
            const after = yield* backend.capacity
            assert.isAtLeast(after.usedBytes, before.usedBytes + 256 * 1024)
            assert.isTrue(after.totalBytes === null || after.totalBytes >= after.usedBytes)
            yield* backend.delete("c", "big")
            assert.isBelow((yield* backend.capacity).usedBytes, after.usedBytes)
          })
        )
        const bounded = yield* withBackend((backend) => backend.capacity, { maxBytes: 1 << 20 })
        assert.strictEqual(bounded.totalBytes, 1 << 20)
      })
    )
  })

conformance("StorageBackend.layerMemory", memoryLayer)
conformance("StorageBackend.layerSqlite", sqliteLayer)

describe("StorageBackend.layerSqlite", () => {
  it.scoped("keeps data across reopening the file", () =>
    Effect.gen(function* () {
      const filename = path.join(yield* tempDir, "node.db")
      const value = randomBytes(10_000, 9)
      yield* Effect.flatMap(StorageBackend.StorageBackend, (backend) =>
        Effect.zipRight(
          backend.store("ns", "kept", value),
          backend.batch([put("ns", "batched", bytes("yes")), put("other", "x", bytes("x"))])
        )
      ).pipe(Effect.provide(StorageBackend.layerSqlite({ filename })))

      const reopened = yield* Effect.flatMap(StorageBackend.StorageBackend, (backend) =>
        Effect.all([backend.retrieve("ns", "kept"), backend.list("ns", ""), collect(backend.snapshot())])
      ).pipe(Effect.provide(StorageBackend.layerSqlite({ filename, synchronous: "FULL" })))
      assert.strictEqual(hex(Option.getOrThrow(reopened[0])), hex(value))
      assert.deepStrictEqual(reopened[1], ["batched", "kept"])
      assert.deepStrictEqual(
        reopened[2].map((e) => `${e.namespace}/${e.key}`),
        ["ns/batched", "ns/kept", "other/x"]
      )
    })
  )

  it.scoped("creates a missing data directory", () =>
    Effect.gen(function* () {
      const filename = path.join(yield* tempDir, "fresh", "data", "node.db")
      yield* Effect.flatMap(StorageBackend.StorageBackend, (backend) =>
        backend.store("ns", "k", new Uint8Array([1]))
      ).pipe(Effect.provide(StorageBackend.layerSqlite({ filename })))
      assert.isTrue(fsSync.existsSync(filename))
    })
  )

  it.scoped("fails to open with a StorageError, not a defect", () =>
    Effect.gen(function* () {
      // A missing directory is created; one that cannot be (a file is in the way) fails the open.
      const blocker = path.join(yield* tempDir, "a-file")
      fsSync.writeFileSync(blocker, "")
      const filename = path.join(blocker, "node.db")
      const error = yield* Effect.flip(
        Effect.provide(StorageBackend.StorageBackend, StorageBackend.layerSqlite({ filename }))
      )
      assert.strictEqual(error._tag, "StorageError")
      assert.strictEqual(error.operation, "open")
    })
  )
})
