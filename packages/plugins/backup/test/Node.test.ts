/**
 * The backup plugin as a subprocess of a real node with SQLite storage: the
 * built package (dist/, plugin.json, config.schema.json) loaded the way an
 * operator's node loads it, its data directory given by the subprocess loader.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as BlackholeNode from "@blackhole/core/BlackholeNode"
import { EventBus } from "@blackhole/core/EventBus"
import * as Identity from "@blackhole/core/Identity"
import { PluginManager } from "@blackhole/core/PluginManager"
import * as Principal from "@blackhole/core/Principal"
import { ServiceRegistry } from "@blackhole/core/ServiceRegistry"
import { Storage } from "@blackhole/core/Storage"
import * as StorageBackend from "@blackhole/core/StorageBackend"
import * as SubprocessLoader from "@blackhole/core/SubprocessLoader"
import type { Event } from "@blackhole/sdk/Event"
import * as PluginManifest from "@blackhole/sdk/PluginManifest"
import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { Backup } from "../src/contract.js"
import * as SnapshotFile from "../src/internal/snapshotFile.js"
import { bytes, eventually, tempDir, text } from "./support.js"

const packageDir = fileURLToPath(new URL("..", import.meta.url))
const pluginId = "dev.blackhole.backup"

/** A node over SQLite in `dir`, with the backup plugin registered as a subprocess (not yet started). */
const withNode = <A, E>(
  options: {
    readonly grants?: ReadonlyArray<string>
    readonly config?: unknown
    readonly maxFrameBytes?: number
  },
  body: (dataDirectory: string) => Effect.Effect<A, E, BlackholeNode.NodeServices | Scope.Scope>
) =>
  Effect.gen(function* () {
    const dir = yield* tempDir
    const dataDirectory = path.join(dir, "plugin-data", pluginId)
    const node = BlackholeNode.layerWith({
      environment: "test",
      grants: { [pluginId]: options.grants ?? ["service:storage:write"] }
    }).pipe(
      Layer.provideMerge(
        Layer.mergeAll(
          Identity.layerMemory(),
          StorageBackend.layerSqlite({ filename: path.join(dir, "node.db") })
        )
      )
    )
    return yield* Effect.gen(function* () {
      const manifest = yield* PluginManifest.decodeJson(
        fs.readFileSync(path.join(packageDir, "plugin.json"), "utf8"),
        packageDir
      )
      const loader = SubprocessLoader.make({
        directory: packageDir,
        manifest,
        dataDirectory,
        ...(options.maxFrameBytes === undefined ? {} : { maxFrameBytes: options.maxFrameBytes })
      })
      const manager = yield* PluginManager
      yield* manager.registerWith(manifest, loader, {
        config: options.config ?? {},
        restart: { policy: "never" }
      })
      return yield* body(dataDirectory)
    }).pipe(Effect.scoped, Effect.provide(node))
  })

/** Records every event of `pattern` on the host's bus from now on. */
const record = (pattern: string) =>
  Effect.gen(function* () {
    const bus = yield* EventBus
    const subscription = yield* bus.subscribe(pattern, { capacity: 4096 })
    const seen: Array<Event> = []
    yield* subscription.stream.pipe(
      Stream.runForEach((event) => Effect.sync(() => seen.push(event))),
      Effect.forkScoped
    )
    return seen
  })

const put = (namespace: string, key: string, value: string) =>
  ({ _tag: "Put", namespace, key, value: bytes(value) }) as const

describe("backup in a node, as a subprocess", () => {
  it.scopedLive(
    "snapshots are point-in-time while another fiber keeps writing, and restore puts them back",
    () =>
      withNode({ config: { retention: 10 } }, (dataDirectory) =>
        Effect.gen(function* () {
          const manager = yield* PluginManager
          const storage = yield* Storage
          const registry = yield* ServiceRegistry
          const events = yield* record("backup.*")
          yield* storage.batch("test", [
            put("users", "alice", "Alice"),
            put("users", "bob", "Bob"),
            put("plugin/com.example.notes", "n1", "first note")
          ])
          yield* manager.start(pluginId)
          const info = yield* manager.get(pluginId)
          assert.strictEqual(info.state, "running")
          assert.strictEqual(info.loader, "subprocess")
          assert.isNotNull(info.pid)

          // A writer that always writes the pair together, in one atomic batch.
          let written = 0
          const writer = yield* Effect.gen(function* () {
            for (let n = 1; ; n++) {
              yield* storage.batch("test", [put("pair", "a", String(n)), put("pair", "b", String(n))])
              written = n
              yield* Effect.sleep("1 millis")
            }
          }).pipe(Effect.forkScoped)

          const backup = registry.client(Principal.operator, Backup)
          const taken = []
          for (let i = 0; i < 5; i++) taken.push(yield* backup.run())
          yield* Fiber.interrupt(writer)
          assert.isAbove(written, 0)

          for (const snapshot of taken) {
            assert.isTrue((yield* backup.verify({ id: snapshot.id })).valid)
            const entries = Chunk.toReadonlyArray(
              yield* Stream.runCollect(SnapshotFile.entries(dataDirectory, snapshot.id))
            )
            assert.strictEqual(entries.length, snapshot.entries)
            const pair = entries
              .filter((entry) => entry.namespace === "pair")
              .map((entry) => text(entry.value))
            // Both keys or neither, and always with the same value: the snapshot saw whole batches only.
            if (pair.length > 0) {
              assert.strictEqual(pair.length, 2, `snapshot ${snapshot.id} holds half a batch`)
              assert.strictEqual(pair[0], pair[1], `snapshot ${snapshot.id} mixes two batches`)
            }
          }

          // Events reached the host's bus, stamped with the plugin as their source.
          const completed = yield* eventually(
            Effect.sync(() => {
              const found = events.filter((event) => event.type === "backup.completed")
              return found.length === taken.length ? found : undefined
            }),
            "a backup.completed event per run"
          )
          assert.deepStrictEqual(
            completed.map((event) => event.source),
            taken.map(() => pluginId)
          )

          // Restore: lose some data, put the last snapshot back through the storage service.
          yield* storage.delete("test", "users", "alice")
          yield* storage.store("test", "users", "bob", bytes("overwritten"))
          const last = taken.at(-1)!
          const restored = yield* backup.restore({ id: last.id })
          assert.deepStrictEqual(restored, { id: last.id, entries: last.entries, batches: 1 })
          const value = (namespace: string, key: string) =>
            Effect.map(storage.retrieve(namespace, key), (v) => Option.getOrUndefined(Option.map(v, text)))
          assert.strictEqual(yield* value("users", "alice"), "Alice")
          assert.strictEqual(yield* value("users", "bob"), "Bob")
          assert.strictEqual(yield* value("plugin/com.example.notes", "n1"), "first note")

          // Retention 10: all five kept, in the plugin's data directory.
          const status = yield* backup.list()
          assert.strictEqual(status.directory, dataDirectory)
          assert.deepStrictEqual(
            status.snapshots.map((s) => s.id),
            taken.map((s) => s.id).reverse()
          )
        })
      )
  )

  it.scopedLive("without the operator's grant of service:storage:write it does not start, and says so", () =>
    withNode({ grants: [] }, () =>
      Effect.gen(function* () {
        const manager = yield* PluginManager
        const error = yield* Effect.flip(manager.start(pluginId))
        assert.strictEqual(error._tag, "MissingGrants")
        assert.include(error.message, "service:storage:write")
        assert.include(error.message, `plugins.grants."${pluginId}"`)
        assert.strictEqual((yield* manager.get(pluginId)).state, "failed")
      })
    )
  )

  it.scopedLive("a snapshot too large for the plugin's channel is reported as a failed backup", () =>
    withNode({ maxFrameBytes: 64 * 1024 }, () =>
      Effect.gen(function* () {
        const manager = yield* PluginManager
        const storage = yield* Storage
        const registry = yield* ServiceRegistry
        const events = yield* record("backup.*")
        yield* storage.store("test", "blobs", "big", new Uint8Array(200 * 1024).fill(7))
        yield* manager.start(pluginId)
        const backup = registry.client(Principal.operator, Backup)
        const error = yield* Effect.flip(backup.run())
        assert.strictEqual(error._tag, "BackupError")
        assert.match(error.message, /frame cap/)

        const failed = yield* eventually(
          Effect.sync(() => events.find((event) => event.type === "backup.failed")),
          "a backup.failed event"
        )
        assert.strictEqual(failed.source, pluginId)
        assert.match((failed.data as { reason: string }).reason, /frame cap/)
        const status = yield* backup.list()
        assert.strictEqual(status.status, "degraded")
        assert.deepStrictEqual(status.snapshots, [])
        // The plugin itself is fine: it keeps running and serving.
        assert.strictEqual((yield* manager.get(pluginId)).state, "running")
      })
    )
  )
})
