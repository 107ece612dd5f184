/**
 * One storage contract suite, run against fs-store compiled into a node and
 * as a subprocess of one. Every check goes through the host-side handlers
 * (`PluginManager.handlers(id).storage`): for the subprocess those are proxies
 * that cross the plugin channel, so the contract is checked end to end.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type * as BlackholeNode from "@blackhole/core/BlackholeNode"
import * as NodeTest from "@blackhole/core/NodeTest"
import { PluginManager } from "@blackhole/core/PluginManager"
import * as SubprocessLoader from "@blackhole/core/SubprocessLoader"
import type * as Plugin from "@blackhole/sdk/Plugin"
import * as PluginManifest from "@blackhole/sdk/PluginManifest"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import definition from "../src/index.js"
import { bytes, filesUnder, tempDir, text } from "./support.js"

const packageDir = fileURLToPath(new URL("..", import.meta.url))
const pluginId = "dev.blackhole.fs-store"

interface Harness {
  /** The plugin's backend as the host sees it. */
  readonly backend: Plugin.StorageBackend
  /** Where the plugin keeps its files. */
  readonly directory: string
  /** Stops and starts the plugin (a new process for the subprocess loader); the new backend. */
  readonly restart: Effect.Effect<Plugin.StorageBackend>
}

interface LoaderCase {
  readonly name: string
  readonly kind: "inprocess" | "subprocess"
  /** Registers fs-store with `maxBytes`; returns the directory it will use. */
  readonly register: (
    maxBytes: number | undefined
  ) => Effect.Effect<string, unknown, PluginManager | Scope.Scope>
}

const loaders: ReadonlyArray<LoaderCase> = [
  {
    name: "compiled-in",
    kind: "inprocess",
    register: (maxBytes) =>
      Effect.gen(function* () {
        const directory = yield* tempDir
        const manager = yield* PluginManager
        yield* manager.register(definition, {
          config: { directory, ...(maxBytes === undefined ? {} : { maxBytes }) }
        })
        return directory
      })
  },
  {
    name: "subprocess",
    kind: "subprocess",
    // Its data directory, as the node gives it: no `directory` in the config, no fs grant needed.
    register: (maxBytes) =>
      Effect.gen(function* () {
        const directory = path.join(yield* tempDir, "plugin-data", pluginId)
        const manifest = yield* PluginManifest.decodeJson(
          fs.readFileSync(path.join(packageDir, "plugin.json"), "utf8"),
          packageDir
        )
        const manager = yield* PluginManager
        yield* manager.registerWith(
          manifest,
          SubprocessLoader.make({ directory: packageDir, manifest, dataDirectory: directory }),
          { config: maxBytes === undefined ? {} : { maxBytes }, restart: { policy: "never" } }
        )
        return directory
      })
  }
]

const backendOf = Effect.gen(function* () {
  const manager = yield* PluginManager
  const handlers = yield* manager.handlers(pluginId)
  const storage = handlers?.storage
  if (storage === undefined)
    return yield* Effect.dieMessage("fs-store is running but has no storage handlers")
  return storage
})

/** A fresh node per test with fs-store started under `loader`. */
const withStore =
  <A, E>(
    loader: LoaderCase,
    body: (harness: Harness) => Effect.Effect<A, E, BlackholeNode.NodeServices | Scope.Scope>,
    options: { readonly maxBytes?: number } = {}
  ) =>
  () =>
    Effect.gen(function* () {
      const directory = yield* loader.register(options.maxBytes)
      const manager = yield* PluginManager
      yield* manager.start(pluginId)
      const info = yield* manager.get(pluginId)
      assert.strictEqual(info.loader, loader.kind)
      assert.strictEqual(info.state, "running")
      const restart = Effect.gen(function* () {
        yield* manager.stop(pluginId)
        yield* Effect.orDie(manager.start(pluginId))
        return yield* backendOf
      }).pipe(Effect.orDie, Effect.provideService(PluginManager, manager))
      return yield* body({ backend: yield* backendOf, directory, restart })
    }).pipe(Effect.provide(NodeTest.layer()))

const read = (backend: Plugin.StorageBackend, key: string) =>
  Effect.map(backend.retrieve(key), (value) => (value === undefined ? undefined : text(value)))

for (const loader of loaders) {
  describe(`fs-store storage contract: ${loader.name}`, () => {
    it.scopedLive(
      "stores, retrieves, overwrites and deletes",
      withStore(loader, ({ backend }) =>
        Effect.gen(function* () {
          assert.isUndefined(yield* backend.retrieve("k"))
          yield* backend.store("k", bytes("one"))
          assert.strictEqual(yield* read(backend, "k"), "one")
          yield* backend.store("k", bytes("two"))
          assert.strictEqual(yield* read(backend, "k"), "two")
          assert.isTrue(yield* backend.delete("k"))
          assert.isFalse(yield* backend.delete("k"))
          assert.isUndefined(yield* backend.retrieve("k"))
        })
      )
    )

    it.scopedLive(
      "keeps bytes exactly: empty, every byte value, 1 MiB",
      withStore(loader, ({ backend }) =>
        Effect.gen(function* () {
          const every = Uint8Array.from({ length: 256 }, (_, i) => i)
          const large = Uint8Array.from({ length: 1 << 20 }, (_, i) => (i * 31) % 251)
          yield* backend.store("empty", new Uint8Array(0))
          yield* backend.store("every", every)
          yield* backend.store("large", large)
          assert.deepStrictEqual(yield* backend.retrieve("empty"), new Uint8Array(0))
          assert.deepStrictEqual(yield* backend.retrieve("every"), every)
          assert.deepStrictEqual(yield* backend.retrieve("large"), large)
        })
      )
    )

    it.scopedLive(
      "list returns the keys with a prefix in code point order, for any key",
      withStore(loader, ({ backend }) =>
        Effect.gen(function* () {
          const keys = [
            "b",
            "a/2",
            "a/10",
            "a/1",
            "ab",
            "new\nline",
            "ünï",
            "😀",
            "\uffff",
            "x".repeat(500),
            ""
          ]
          for (const key of keys) yield* backend.store(key, bytes(`value of ${key}`))
          assert.deepStrictEqual(yield* backend.list(""), [
            "",
            "a/1",
            "a/10",
            "a/2",
            "ab",
            "b",
            "new\nline",
            "x".repeat(500),
            "ünï",
            "\uffff",
            "😀"
          ])
          assert.deepStrictEqual(yield* backend.list("a/"), ["a/1", "a/10", "a/2"])
          assert.deepStrictEqual(yield* backend.list("zzz"), [])
          for (const key of keys) assert.strictEqual(yield* read(backend, key), `value of ${key}`)
        })
      )
    )

    it.scopedLive(
      "identical values are stored once, and counted once in capacity",
      withStore(loader, ({ backend, directory }) =>
        Effect.gen(function* () {
          yield* backend.store("a", bytes("0123456789"))
          yield* backend.store("b", bytes("0123456789"))
          yield* backend.store("c", bytes("other"))
          assert.deepStrictEqual(yield* backend.capacity, { usedBytes: 15, totalBytes: null })
          assert.strictEqual(filesUnder(path.join(directory, "objects")).length, 2)
          yield* backend.delete("a")
          assert.deepStrictEqual(yield* backend.capacity, { usedBytes: 15, totalBytes: null })
          yield* backend.delete("b")
          assert.deepStrictEqual(yield* backend.capacity, { usedBytes: 5, totalBytes: null })
          assert.strictEqual(filesUnder(path.join(directory, "objects")).length, 1)
        })
      )
    )

    it.scopedLive(
      "maxBytes is the capacity's total; a store past it fails with a StorageFailure that says what to do",
      withStore(
        loader,
        ({ backend }) =>
          Effect.gen(function* () {
            assert.deepStrictEqual(yield* backend.capacity, { usedBytes: 0, totalBytes: 64 })
            yield* backend.store("fits", new Uint8Array(60))
            const error = yield* Effect.flip(backend.store("too-much", new Uint8Array(10).fill(1)))
            assert.strictEqual(error._tag, "StorageFailure")
            assert.strictEqual(error.operation, "store")
            assert.include(error.reason, 'raise "maxBytes"')
            assert.isUndefined(yield* backend.retrieve("too-much"))
          }),
        { maxBytes: 64 }
      )
    )

    it.scopedLive(
      "what was stored survives a restart of the plugin",
      withStore(loader, ({ backend, restart }) =>
        Effect.gen(function* () {
          yield* backend.store("kept", bytes("across restarts"))
          yield* backend.store("gone", bytes("deleted"))
          yield* backend.delete("gone")
          const again = yield* restart
          assert.strictEqual(yield* read(again, "kept"), "across restarts")
          assert.isUndefined(yield* again.retrieve("gone"))
          assert.deepStrictEqual(yield* again.list(""), ["kept"])
        })
      )
    )
  })
}

describe("fs-store as a subprocess", () => {
  it.scopedLive(
    "a directory outside its data directory without the fs:write grant fails start, naming the grant",
    () =>
      Effect.gen(function* () {
        const outside = yield* tempDir
        const manifest = yield* PluginManifest.decodeJson(
          fs.readFileSync(path.join(packageDir, "plugin.json"), "utf8"),
          packageDir
        )
        const manager = yield* PluginManager
        yield* manager.registerWith(
          manifest,
          SubprocessLoader.make({
            directory: packageDir,
            manifest,
            dataDirectory: path.join(yield* tempDir, "plugin-data", pluginId)
          }),
          { config: { directory: path.join(outside, "store") }, restart: { policy: "never" } }
        )
        const error = yield* Effect.flip(manager.start(pluginId))
        assert.include(error.message, `fs:write:${path.join(outside, "store")}`)
        assert.deepStrictEqual(fs.readdirSync(outside), [])
      }).pipe(Effect.provide(NodeTest.layer()))
  )

  // A proxy kept past the plugin's stop fails with a StorageFailure (it used to interrupt its caller).
  it.scopedLive("its storage handlers report the plugin gone once it stops", () =>
    Effect.gen(function* () {
      const directory = path.join(yield* tempDir, "plugin-data", pluginId)
      const manifest = yield* PluginManifest.decodeJson(
        fs.readFileSync(path.join(packageDir, "plugin.json"), "utf8"),
        packageDir
      )
      const manager = yield* PluginManager
      yield* manager.registerWith(
        manifest,
        SubprocessLoader.make({ directory: packageDir, manifest, dataDirectory: directory }),
        { restart: { policy: "never" } }
      )
      yield* manager.start(pluginId)
      const backend = yield* backendOf
      yield* backend.store("k", bytes("v"))
      yield* manager.stop(pluginId)
      assert.isUndefined(yield* manager.handlers(pluginId))
      const error = yield* Effect.flip(backend.retrieve("k"))
      assert.strictEqual(error._tag, "StorageFailure")
    }).pipe(Effect.provide(NodeTest.layer()))
  )
})
