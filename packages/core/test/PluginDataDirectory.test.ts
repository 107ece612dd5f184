/** Every plugin gets its own data directory through NodeInfo, compiled-in and subprocess alike. */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { NodeInfo } from "@blackhole/sdk/NodeInfo"
import * as Plugin from "@blackhole/sdk/Plugin"
import * as PluginConfig from "@blackhole/sdk/PluginConfig"
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as NodeTest from "../src/NodeTest.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "bh-plugin-data-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

describe("plugin data directories", () => {
  it.scopedLive("a compiled-in plugin learns <data>/plugin-data/<id>/ from NodeInfo, created for it", () =>
    Effect.gen(function* () {
      const dataDir = yield* tempDir
      const seen = yield* Deferred.make<string | undefined>()
      const plugin = Plugin.integration({
        manifest: { id: "com.example.data", name: "Data", version: "1.0.0", type: "integration" },
        config: PluginConfig.none,
        program: Effect.gen(function* () {
          const { dataDirectory } = yield* NodeInfo
          yield* Deferred.succeed(seen, dataDirectory)
          return { integration: { kind: "test", sync: Effect.void } }
        })
      })
      yield* Effect.provide(Effect.void, NodeTest.layer({ dataDir, plugins: [plugin] }))
      const directory = yield* Deferred.await(seen)
      assert.strictEqual(directory, path.join(dataDir, "plugin-data", "com.example.data"))
      assert.isTrue(fs.statSync(directory!).isDirectory())
      assert.strictEqual(fs.statSync(directory!).mode & 0o777, 0o700)
    })
  )

  it.scopedLive("a node without a data directory gives none", () =>
    Effect.gen(function* () {
      const seen = yield* Deferred.make<string | undefined>()
      const plugin = Plugin.integration({
        manifest: { id: "com.example.nodata", name: "No data", version: "1.0.0", type: "integration" },
        config: PluginConfig.none,
        program: Effect.gen(function* () {
          yield* Deferred.succeed(seen, (yield* NodeInfo).dataDirectory)
          return { integration: { kind: "test", sync: Effect.void } }
        })
      })
      yield* Effect.provide(Effect.void, NodeTest.layer({ plugins: [plugin] }))
      assert.isUndefined(yield* Deferred.await(seen))
    })
  )
})
