/**
 * fs-store as the storage of one namespace of a node, configured the way an
 * operator does (`storage.namespaces`), with fs-store running as a subprocess.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as NodeTest from "@blackhole/core/NodeTest"
import * as PluginManager from "@blackhole/core/PluginManager"
import * as Storage from "@blackhole/core/Storage"
import * as StorageBackend from "@blackhole/core/StorageBackend"
import * as StorageRouting from "@blackhole/core/StorageRouting"
import * as SubprocessLoader from "@blackhole/core/SubprocessLoader"
import * as PluginManifest from "@blackhole/sdk/PluginManifest"
import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as ObjectStore from "../src/internal/objectStore.js"
import { bytes, tempDir, text } from "./support.js"

const packageDir = fileURLToPath(new URL("..", import.meta.url))
const pluginId = "dev.blackhole.fs-store"

/** A node configured to keep the `media` namespace in fs-store (`storage.namespaces`). */
const node = NodeTest.layer({ storage: { namespaces: { media: pluginId } } })

describe("fs-store behind the node's storage routing", () => {
  it.scopedLive("a routed namespace is kept in fs-store's files, the rest in the node's backend", () =>
    Effect.gen(function* () {
      const dataDirectory = path.join(yield* tempDir, "plugin-data", pluginId)
      yield* Effect.gen(function* () {
        const manifest = yield* PluginManifest.decodeJson(
          fs.readFileSync(path.join(packageDir, "plugin.json"), "utf8"),
          packageDir
        )
        const manager = yield* PluginManager.PluginManager
        yield* manager.registerWith(
          manifest,
          SubprocessLoader.make({ directory: packageDir, manifest, dataDirectory }),
          { restart: { policy: "never" } }
        )
        const storage = yield* Storage.Storage
        const base = yield* StorageBackend.StorageBackend
        const value = (namespace: string, key: string) =>
          Effect.map(storage.retrieve(namespace, key), (v) => Option.getOrUndefined(Option.map(v, text)))

        const early = yield* Effect.flip(storage.store("test", "media", "cat.png", bytes("meow")))
        assert.include(early.message, "not running")

        yield* manager.start(pluginId)
        yield* storage.batch("test", [
          { _tag: "Put", namespace: "media", key: "cat.png", value: bytes("meow") },
          { _tag: "Put", namespace: "media", key: "copy-of-cat.png", value: bytes("meow") },
          { _tag: "Put", namespace: "users", key: "alice", value: bytes("Alice") }
        ])
        assert.strictEqual(yield* value("media", "cat.png"), "meow")
        assert.deepStrictEqual(yield* storage.list("media", ""), ["cat.png", "copy-of-cat.png"])
        // In fs-store's directory (one object for the two identical values), not in the base.
        const keyFiles = fs.readdirSync(path.join(dataDirectory, "keys")).sort()
        assert.deepStrictEqual(
          keyFiles,
          [
            ObjectStore.keyFileName(StorageRouting.qualify("media", "cat.png")),
            ObjectStore.keyFileName(StorageRouting.qualify("media", "copy-of-cat.png"))
          ].sort()
        )
        assert.strictEqual(fs.readdirSync(path.join(dataDirectory, "objects")).length, 1)
        assert.isTrue(Option.isNone(yield* base.retrieve("media", "cat.png")))
        assert.isTrue(Option.isSome(yield* base.retrieve("users", "alice")))

        const snapshot = Chunk.toReadonlyArray(yield* Stream.runCollect(storage.snapshot()))
        assert.deepStrictEqual(
          snapshot.map((entry) => `${entry.namespace}/${entry.key}=${text(entry.value)}`),
          ["media/cat.png=meow", "media/copy-of-cat.png=meow", "users/alice=Alice"]
        )

        yield* manager.stop(pluginId)
        const stopped = yield* Effect.flip(value("media", "cat.png"))
        assert.include(stopped.message, `blackhole plugin start ${pluginId}`)
        assert.strictEqual(yield* value("users", "alice"), "Alice")

        yield* manager.start(pluginId)
        assert.strictEqual(yield* value("media", "copy-of-cat.png"), "meow")
      }).pipe(Effect.scoped, Effect.provide(node))
    })
  )
})
