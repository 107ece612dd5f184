/**
 * Standalone bundles: a plugin whose plugin.json names a `bundle` (built by
 * scripts/bundle-plugins.mjs) runs that file directly instead of the SDK's
 * runtime entry, and behaves the same; a bundle whose source files changed
 * since it was built is stale and ignored, and a code cache that was not made
 * from the bundle's script is not used.
 */
import * as childProcess from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as NodeTest from "../src/NodeTest.js"
import { PluginManager } from "../src/PluginManager.js"
import * as Principal from "../src/Principal.js"
import { ServiceRegistry } from "../src/ServiceRegistry.js"
import * as SubprocessLoader from "../src/SubprocessLoader.js"
// @ts-expect-error the fixture is plain JavaScript
import { Echo } from "./fixtures/plugins/echo/contract.mjs"
import { captureLogs, type LogLine, registerSubprocess } from "./support.js"

type EchoClient = {
  readonly echo: (payload: { readonly text: string }) => Effect.Effect<string, unknown>
  readonly pid: () => Effect.Effect<number, unknown>
}

const fixtures = path.join(import.meta.dirname, "fixtures")
const bundler = path.join(import.meta.dirname, "..", "..", "..", "scripts", "bundle-plugins.mjs")

/** A copy of the echo fixture with a `bundle`, bundled; removed when the Scope closes. */
const bundledEcho = Effect.acquireRelease(
  Effect.sync(() => {
    const root = fs.mkdtempSync(path.join(fixtures, "tmp-bundle-"))
    const plugin = path.join(root, "echo")
    fs.cpSync(path.join(fixtures, "plugins", "echo"), plugin, { recursive: true })
    const manifestFile = path.join(plugin, "plugin.json")
    const manifest = JSON.parse(fs.readFileSync(manifestFile, "utf8"))
    // A heap cap: its V8 flag must be the one the code cache is made under.
    fs.writeFileSync(
      manifestFile,
      JSON.stringify({ ...manifest, bundle: "dist/bundle.cjs", resources: { maxMemory: "192MB" } })
    )
    childProcess.execFileSync(process.execPath, [bundler, plugin], { stdio: "pipe" })
    return { root, plugin }
  }),
  ({ root }) => Effect.sync(() => fs.rmSync(root, { recursive: true, force: true }))
)

/** Whether a node started with `flags` accepts `<codeFile>.cache` for the script, as the launcher compiles it. */
const cacheVerdict = (flags: ReadonlyArray<string>, codeFile: string) =>
  childProcess
    .execFileSync(
      process.execPath,
      [
        ...flags,
        "-e",
        [
          "const fs = require('node:fs'), vm = require('node:vm')",
          "const [file] = process.argv.slice(1)",
          "const source = fs.readFileSync(file, 'utf8')",
          "const cachedData = fs.readFileSync(file + '.cache').subarray(32)",
          "const wrapped = '(function (exports, require, module, __filename, __dirname) {' + source + '\\n})'",
          "const script = new vm.Script(wrapped, { filename: file, cachedData })",
          "process.stdout.write(script.cachedDataRejected ? 'rejected' : 'accepted')"
        ].join("\n"),
        codeFile
      ],
      { encoding: "utf8" }
    )
    .trim()

/** The command line of a running process. */
const commandLine = (pid: number) => fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")

describe("standalone plugin bundles", () => {
  it.scopedLive(
    "the host runs a bundle that matches its sources directly (copies too), and falls back to main when it is stale",
    () => {
      const logs: Array<LogLine> = []
      return Effect.gen(function* () {
        const { plugin } = yield* bundledEcho
        // Self-contained: the bundle requires nothing but Node's own modules, and its launcher is
        // CommonJS (no ES module loader in the plugin process) that loads no crypto.
        const launcher = fs.readFileSync(path.join(plugin, "dist", "bundle.cjs"), "utf8")
        assert.notMatch(launcher, /\bimport\b/)
        assert.deepStrictEqual(launcher.match(/require\("[^"]+"\)/g), [
          'require("node:fs")',
          'require("node:path")',
          'require("node:vm")'
        ])
        const code = fs.readFileSync(path.join(plugin, "dist", "bundle.code.cjs"))
        assert.notMatch(code.toString("utf8"), /require\("(?!node:)[^"]+"\)/)
        // Its V8 code cache is marked with the hash of the script it was made from, which the launcher carries.
        const digest = crypto.createHash("sha256").update(code).digest()
        const cache = fs.readFileSync(path.join(plugin, "dist", "bundle.code.cjs.cache"))
        assert.deepStrictEqual(cache.subarray(0, 32), digest)
        assert.include(launcher, digest.toString("hex"))
        assert.isAbove(cache.length, 1024)
        const manifest = yield* registerSubprocess(plugin)
        // V8 takes the cache under the flags the loader starts this plugin with, and only those.
        const flags = SubprocessLoader.v8Flags(manifest)
        assert.deepStrictEqual(flags, ["--max-old-space-size=144"])
        const codeFile = path.join(plugin, "dist", "bundle.code.cjs")
        assert.strictEqual(cacheVerdict(flags, codeFile), "accepted")
        assert.strictEqual(cacheVerdict([], codeFile), "rejected")
        const manager = yield* PluginManager
        const mesh = yield* ServiceRegistry
        const echo = mesh.client(Principal.operator, Echo) as EchoClient
        yield* manager.start(manifest.id)

        const bundled = yield* manager.get(manifest.id)
        assert.isNotNull(bundled.pid)
        assert.isTrue(commandLine(bundled.pid!).some((arg) => arg.endsWith(path.join("dist", "bundle.cjs"))))
        assert.strictEqual(yield* echo.echo({ text: "from the bundle" }), "from the bundle")

        // A copy (new timestamps, same content) still runs its bundle.
        yield* manager.stop(manifest.id)
        const copy = path.join(path.dirname(plugin), "echo-copy")
        fs.cpSync(plugin, copy, { recursive: true })
        const copyManifest = JSON.parse(fs.readFileSync(path.join(copy, "plugin.json"), "utf8"))
        fs.writeFileSync(
          path.join(copy, "plugin.json"),
          JSON.stringify({ ...copyManifest, id: "com.example.copy" })
        )
        const copied = yield* registerSubprocess(copy)
        yield* manager.start(copied.id)
        const copyInfo = yield* manager.get(copied.id)
        assert.isTrue(commandLine(copyInfo.pid!).some((arg) => arg.endsWith(path.join("dist", "bundle.cjs"))))
        assert.strictEqual(yield* echo.echo({ text: "from the copy" }), "from the copy")
        yield* manager.stop(copied.id)

        // A code cache without the script's hash, or garbage, does not stop the plugin: it compiles from source.
        const copyCache = path.join(copy, "dist", "bundle.code.cjs.cache")
        fs.writeFileSync(
          copyCache,
          Buffer.concat([Buffer.alloc(32), fs.readFileSync(copyCache).subarray(32)])
        )
        yield* manager.start(copied.id)
        assert.strictEqual(yield* echo.echo({ text: "without its cache" }), "without its cache")
        fs.writeFileSync(copyCache, "not a cache")
        yield* manager.restart(copied.id)
        assert.strictEqual(yield* echo.echo({ text: "without any cache" }), "without any cache")

        // The script or the launcher changed after the build (same length, as V8 would not notice):
        // the bundle is not used, the host runs main.
        for (const file of ["bundle.code.cjs", "bundle.cjs"]) {
          const built = path.join(copy, "dist", file)
          const original = fs.readFileSync(built)
          const edited = Buffer.from(original)
          edited[edited.length - 1] = edited[edited.length - 1] === 0x0a ? 0x20 : 0x0a
          fs.writeFileSync(built, edited)
          yield* manager.restart(copied.id)
          const edit = yield* manager.get(copied.id)
          assert.isFalse(
            commandLine(edit.pid!).some((arg) => arg.endsWith("bundle.cjs")),
            file
          )
          assert.strictEqual(yield* echo.echo({ text: `${file} edited` }), `${file} edited`)
          fs.writeFileSync(built, original)
        }
        yield* manager.stop(copied.id)

        // The plugin's code changed since the bundle was built: the bundle is stale and not used.
        fs.appendFileSync(path.join(plugin, "index.mjs"), "\n// changed after bundling\n")
        yield* manager.restart(manifest.id)
        const fallback = yield* manager.get(manifest.id)
        assert.isFalse(commandLine(fallback.pid!).some((arg) => arg.endsWith("bundle.cjs")))
        assert.strictEqual(yield* echo.echo({ text: "from main" }), "from main")
        assert.strictEqual(yield* echo.pid(), fallback.pid)
        // And the operator is told why, and what to do.
        const warnings = logs.filter((line) => line.level === "WARN").map((line) => line.message)
        assert.isTrue(
          warnings.some(
            (line) =>
              line.includes(`not running its bundle dist/bundle.cjs (index.mjs changed since the build)`) &&
              line.includes("rebuild the bundle (npm run build)")
          ),
          warnings.join("\n")
        )
      }).pipe(Effect.provide(NodeTest.layer()), Effect.provide(captureLogs(logs)))
    },
    60_000
  )

  it.scoped(
    "the bundler refuses a bundle that is not a .cjs file, and says why",
    () =>
      Effect.gen(function* () {
        const { plugin } = yield* bundledEcho
        const manifestFile = path.join(plugin, "plugin.json")
        const manifest = JSON.parse(fs.readFileSync(manifestFile, "utf8"))
        fs.writeFileSync(manifestFile, JSON.stringify({ ...manifest, bundle: "dist/bundle.js" }))
        const run = childProcess.spawnSync(process.execPath, [bundler, plugin], { encoding: "utf8" })
        assert.strictEqual(run.status, 1)
        assert.include(run.stderr, `"bundle" is "dist/bundle.js"; name a .cjs file`)
        assert.isFalse(fs.existsSync(path.join(plugin, "dist", "bundle.js")))
      }),
    60_000
  )
})
