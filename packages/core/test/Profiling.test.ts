/** CPU profiles of a subprocess plugin on demand: restarted under --prof, back to normal, report written. */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as NodeTest from "../src/NodeTest.js"
import { PluginManager } from "../src/PluginManager.js"
import * as Profiling from "../src/Profiling.js"
import { registerSubprocess } from "./support.js"

const echo = path.join(import.meta.dirname, "fixtures", "plugins", "echo")

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "bh-profile-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

describe("Profiling", () => {
  it.scopedLive(
    "profiles a running subprocess plugin and leaves it running normally",
    () =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const dataDirectory = path.join(dir, "plugin-data", "com.example.echo")
        const manifest = yield* registerSubprocess(echo, { dataDirectory })
        const manager = yield* PluginManager
        yield* manager.start(manifest.id)
        const before = yield* manager.get(manifest.id)
        const report = yield* Profiling.profile({
          manager,
          pluginId: manifest.id,
          seconds: 1,
          dataDirectory,
          profilesDir: path.join(dir, "profiles")
        })
        assert.match(fs.readFileSync(report, "utf8"), /ticks/)
        assert.isTrue(fs.existsSync(report.replace(/\.txt$/, ".v8.log")))
        const after = yield* manager.get(manifest.id)
        assert.strictEqual(after.state, "running")
        assert.notStrictEqual(after.pid, before.pid)
        // Back to normal: the running process is not profiled.
        assert.isFalse(fs.readFileSync(`/proc/${after.pid}/cmdline`, "utf8").includes("--prof"))
        // A second profile of an in-process plugin, or of a plugin not running, is refused clearly.
        yield* manager.stop(manifest.id)
        const refused = yield* Effect.flip(
          Profiling.profile({ manager, pluginId: manifest.id, seconds: 1, dataDirectory, profilesDir: dir })
        )
        assert.include(refused.message, "start it first")
      }).pipe(Effect.provide(NodeTest.layer())),
    60_000
  )
})
