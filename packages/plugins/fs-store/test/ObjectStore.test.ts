/**
 * The content-addressed store on disk: layout, deduplication, crash leftovers,
 * quota and damage detection; and the plugin on the in-memory test kit.
 */
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { StorageFailure } from "@blackhole/sdk/Plugin"
import { PluginTest } from "@blackhole/sdk/testing"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { FsStore } from "../src/contract.js"
import definition from "../src/index.js"
import * as ObjectStore from "../src/internal/objectStore.js"
import { bytes, filesUnder, tempDir, text } from "./support.js"

const sha256 = (data: string | Uint8Array) => crypto.createHash("sha256").update(data).digest("hex")
const objectFile = (value: string) => `objects/${sha256(value).slice(0, 2)}/${sha256(value)}`

const openIn = (directory: string, maxBytes?: number) =>
  Effect.map(ObjectStore.open({ directory, maxBytes }), (opened) => opened.store)

const read = (store: ObjectStore.ObjectStore, key: string) =>
  Effect.map(store.retrieve(key), (value) => (value === undefined ? undefined : text(value)))

describe("object store", () => {
  it.scopedLive("keeps each value once at objects/<prefix>/<sha256>, a key file per key", () =>
    Effect.gen(function* () {
      const directory = yield* tempDir
      const store = yield* openIn(directory)
      yield* store.store("a", bytes("same"))
      yield* store.store("b", bytes("same"))
      yield* store.store("c", bytes("other"))
      assert.deepStrictEqual(
        filesUnder(directory),
        [
          `keys/${ObjectStore.keyFileName("a")}`,
          `keys/${ObjectStore.keyFileName("b")}`,
          `keys/${ObjectStore.keyFileName("c")}`,
          objectFile("other"),
          objectFile("same")
        ].sort()
      )
      assert.strictEqual(
        fs.readFileSync(path.join(directory, "keys", ObjectStore.keyFileName("a")), "utf8"),
        `${sha256("same")}\na`
      )
      assert.deepStrictEqual(yield* store.stats, {
        directory,
        keys: 3,
        objects: 2,
        usedBytes: 9,
        logicalBytes: 13,
        totalBytes: null
      })
      assert.deepStrictEqual(yield* store.capacity, { usedBytes: 9, totalBytes: null })
    })
  )

  it.scopedLive("an object is removed with the last key that holds it", () =>
    Effect.gen(function* () {
      const directory = yield* tempDir
      const store = yield* openIn(directory)
      yield* store.store("a", bytes("shared"))
      yield* store.store("b", bytes("shared"))
      assert.isTrue(yield* store.delete("a"))
      assert.isTrue(fs.existsSync(path.join(directory, objectFile("shared"))))
      assert.strictEqual(yield* read(store, "b"), "shared")
      // Overwriting the last holder releases the old object too.
      yield* store.store("b", bytes("new"))
      assert.isFalse(fs.existsSync(path.join(directory, objectFile("shared"))))
      assert.isTrue(yield* store.delete("b"))
      assert.isFalse(yield* store.delete("b"))
      assert.deepStrictEqual(filesUnder(directory), [])
      assert.deepStrictEqual(yield* store.capacity, { usedBytes: 0, totalBytes: null })
    })
  )

  it.scopedLive("reopening rebuilds the index from the key files", () =>
    Effect.gen(function* () {
      const directory = yield* tempDir
      const keys = ["plain", "with/slash", "new\nline", "ünïcödé", "😀 astral", "", "x".repeat(1000)]
      const first = yield* openIn(directory)
      for (const key of keys) yield* first.store(key, bytes(`value of ${key}`))
      yield* first.delete("plain")
      const second = yield* openIn(directory)
      for (const key of keys.slice(1)) assert.strictEqual(yield* read(second, key), `value of ${key}`)
      assert.isUndefined(yield* read(second, "plain"))
      assert.deepStrictEqual(yield* second.list(""), yield* first.list(""))
      assert.deepStrictEqual(yield* second.stats, yield* first.stats)
      // A long key is stored under a hashed name, the key itself inside the file.
      assert.isTrue(ObjectStore.keyFileName("x".repeat(1000)).startsWith("h"))
    })
  )

  it.scopedLive("what a crash leaves behind is cleaned at open; every key keeps a whole value", () =>
    Effect.gen(function* () {
      const directory = yield* tempDir
      const first = yield* openIn(directory)
      yield* first.store("kept", bytes("old value"))
      // A crash after an object was written but before its key file: an object nobody names.
      const orphan = path.join(directory, objectFile("never named"))
      fs.mkdirSync(path.dirname(orphan), { recursive: true })
      fs.writeFileSync(orphan, "never named")
      // A crash while a key file was being replaced: the half-written temp file.
      fs.writeFileSync(path.join(directory, "tmp", "123-1"), `${sha256("new value")}\nke`)
      const { store, removed } = yield* ObjectStore.open({ directory })
      assert.strictEqual(removed, 2)
      assert.isFalse(fs.existsSync(orphan))
      assert.deepStrictEqual(fs.readdirSync(path.join(directory, "tmp")), [])
      assert.strictEqual(yield* read(store, "kept"), "old value")
      assert.deepStrictEqual(yield* store.damage, [])
    })
  )

  it.scopedLive("list returns the keys with the prefix, in code point order", () =>
    Effect.gen(function* () {
      const store = yield* openIn(yield* tempDir)
      const keys = ["b", "a/2", "a/10", "a/1", "a", "ab", "\uffff", "😀", "é", "Z"]
      for (const key of keys) yield* store.store(key, bytes(key))
      assert.deepStrictEqual(yield* store.list(""), [
        "Z",
        "a",
        "a/1",
        "a/10",
        "a/2",
        "ab",
        "b",
        "é",
        "\uffff",
        "😀"
      ])
      assert.deepStrictEqual(yield* store.list("a/"), ["a/1", "a/10", "a/2"])
      assert.deepStrictEqual(yield* store.list("a/1"), ["a/1", "a/10"])
      assert.deepStrictEqual(yield* store.list("nothing"), [])
    })
  )

  it.scopedLive("maxBytes bounds the deduplicated bytes; a store past it fails and changes nothing", () =>
    Effect.gen(function* () {
      const directory = yield* tempDir
      const store = yield* openIn(directory, 10)
      yield* store.store("a", bytes("12345678"))
      // The same value again costs nothing.
      yield* store.store("b", bytes("12345678"))
      const error = yield* Effect.flip(store.store("c", bytes("abcdefgh")))
      assert.instanceOf(error, StorageFailure)
      assert.strictEqual(error.operation, "store")
      assert.include(error.reason, "maxBytes")
      assert.include(error.reason, "16 of the 10 bytes")
      assert.isUndefined(yield* read(store, "c"))
      assert.deepStrictEqual(yield* store.capacity, { usedBytes: 8, totalBytes: 10 })
      // Replacing the only holder of an object frees its bytes first.
      yield* store.delete("b")
      yield* store.store("a", bytes("abcdefghij"))
      assert.deepStrictEqual(yield* store.capacity, { usedBytes: 10, totalBytes: 10 })
    })
  )

  it.scopedLive("a changed or missing object is detected on read and by check", () =>
    Effect.gen(function* () {
      const directory = yield* tempDir
      const store = yield* openIn(directory)
      yield* store.store("changed", bytes("original"))
      yield* store.store("gone", bytes("will vanish"))
      fs.writeFileSync(path.join(directory, objectFile("original")), "tampered")
      fs.rmSync(path.join(directory, objectFile("will vanish")))

      const changed = yield* Effect.flip(store.retrieve("changed"))
      assert.include(changed.reason, "does not match its hash")
      assert.include(changed.reason, "fs-store.check")
      const gone = yield* Effect.flip(store.retrieve("gone"))
      assert.include(gone.reason, "is missing")
      const report = yield* store.check
      assert.strictEqual(report.problems.length, 2)
      assert.strictEqual((yield* store.damage).length, 2)

      // At open, a missing object and a stray key file are reported too.
      fs.writeFileSync(path.join(directory, "keys", "not-a-key-file"), "junk")
      const reopened = yield* openIn(directory)
      const damage = yield* reopened.damage
      assert.isTrue(damage.some((problem) => problem.includes("is missing")))
      assert.isTrue(damage.some((problem) => problem.includes("keys/not-a-key-file")))
    })
  )

  it.scopedLive("a key that has no UTF-8 form is refused", () =>
    Effect.gen(function* () {
      const store = yield* openIn(yield* tempDir)
      const error = yield* Effect.flip(store.store("bad\ud800", bytes("x")))
      assert.include(error.reason, "lone UTF-16 surrogate")
    })
  )

  it.scopedLive("concurrent writers and readers leave a consistent store with no garbage", () =>
    Effect.gen(function* () {
      const directory = yield* tempDir
      const store = yield* openIn(directory)
      const keys = ["k0", "k1", "k2", "k3"]
      const values = ["v0", "v1", "v2", "v0"]
      yield* Effect.forEach(
        Array.from({ length: 200 }, (_, i) => i),
        (i) => {
          const key = keys[i % keys.length]!
          switch (i % 3) {
            case 0:
              return store.store(key, bytes(values[(i * 7) % values.length]!))
            case 1:
              return Effect.asVoid(store.delete(key))
            default:
              return Effect.asVoid(store.retrieve(key))
          }
        },
        { concurrency: "unbounded", discard: true }
      )
      const stats = yield* store.stats
      const objects = filesUnder(directory).filter((file) => file.startsWith("objects/"))
      assert.strictEqual(objects.length, stats.objects)
      const reopened = yield* openIn(directory)
      assert.deepStrictEqual(yield* reopened.stats, stats)
      for (const key of yield* store.list("")) {
        assert.strictEqual(yield* read(reopened, key), yield* read(store, key))
      }
    })
  )
})

describe("fs-store on the test kit", () => {
  it.scopedLive("serves the storage contract and the fs-store service with no permissions", () =>
    Effect.gen(function* () {
      const directory = yield* tempDir
      const { handlers, client } = yield* PluginTest.run(definition, {
        config: { directory, maxBytes: 1000 },
        permissions: "manifest"
      })
      yield* handlers.storage.store("k", bytes("v"))
      assert.strictEqual(text((yield* handlers.storage.retrieve("k"))!), "v")
      assert.deepStrictEqual(yield* handlers.storage.list(""), ["k"])
      assert.deepStrictEqual(yield* handlers.storage.capacity, { usedBytes: 1, totalBytes: 1000 })
      const stats = yield* client(FsStore).stats()
      assert.deepStrictEqual(stats, {
        directory,
        keys: 1,
        objects: 1,
        usedBytes: 1,
        logicalBytes: 1,
        totalBytes: 1000
      })
      assert.deepStrictEqual(yield* client(FsStore).check(), { keys: 1, objects: 1, problems: [] })
      assert.strictEqual((yield* handlers.health!).status, "healthy")
    })
  )

  it.scopedLive("a damaged store starts, logs the damage at error and reports degraded health", () =>
    Effect.gen(function* () {
      const directory = yield* tempDir
      const store = yield* openIn(directory)
      yield* store.store("gone", bytes("will vanish"))
      fs.rmSync(path.join(directory, objectFile("will vanish")))
      const { handlers, recorder } = yield* PluginTest.run(definition, { config: { directory } })
      const health = yield* handlers.health!
      assert.strictEqual(health.status, "degraded")
      assert.include(health.details ?? "", "fs-store.check")
      const errors = (yield* recorder.logs).filter((line) => line.level === "error")
      assert.strictEqual(errors.length, 1)
      assert.include(errors[0]!.message, "is missing")
    })
  )

  it.scopedLive("without a directory outside a subprocess, start fails saying what to set", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(PluginTest.run(definition, {}))
      assert.include(error.message, 'set "directory"')
    })
  )
})
