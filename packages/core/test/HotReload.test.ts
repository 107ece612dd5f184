/**
 * A node with discovery and development mode: the discovered plugin runs in a subprocess, and
 * editing its files restarts only it — a call in flight drains first, the new code answers after,
 * and the rest of the node is untouched.
 */

import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as BlackholeNode from "../src/BlackholeNode.js"
import * as Identity from "../src/Identity.js"
import { PluginManager } from "../src/PluginManager.js"
import * as Principal from "../src/Principal.js"
import { ServiceRegistry } from "../src/ServiceRegistry.js"
import * as StorageBackend from "../src/StorageBackend.js"
// @ts-expect-error the fixture is plain JavaScript
import { Echo } from "./fixtures/plugins/echo/contract.mjs"

type EchoClient = {
  readonly echo: (payload: { readonly text: string }) => Effect.Effect<string, unknown>
  readonly sleep: (payload: { readonly millis: number }) => Effect.Effect<void, unknown>
  readonly pid: () => Effect.Effect<number, unknown>
}

const fixtures = path.join(import.meta.dirname, "fixtures")

/** A copy of the echo plugin inside the repo (so it resolves @blackhole/sdk), and a data dir. */
const workspace = Effect.acquireRelease(
  Effect.sync(() => {
    const root = fs.mkdtempSync(path.join(fixtures, "tmp-hot-"))
    const plugin = path.join(root, "plugins", "echo")
    fs.cpSync(path.join(fixtures, "plugins", "echo"), plugin, { recursive: true })
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "bh-hot-data-"))
    return { root, plugin, dataDir }
  }),
  ({ root, dataDir }) =>
    Effect.sync(() => {
      fs.rmSync(root, { recursive: true, force: true })
      fs.rmSync(dataDir, { recursive: true, force: true })
    })
)

const eventually = <A>(check: Effect.Effect<A | undefined, unknown>, what: string) =>
  Effect.gen(function* () {
    for (let i = 0; i < 300; i++) {
      const value = yield* check.pipe(Effect.orElseSucceed(() => undefined))
      if (value !== undefined) return value
      yield* Effect.sleep("50 millis")
    }
    return yield* Effect.dieMessage(`timed out waiting for ${what}`)
  })

describe("discovery and hot reload", () => {
  it.scopedLive("editing a discovered plugin restarts only it, after in-flight calls drain", () =>
    Effect.gen(function* () {
      const { root, plugin, dataDir } = yield* workspace
      const node = BlackholeNode.layerWith({
        dataDir,
        discovery: { directories: [path.join(root, "plugins")] },
        development: { hotReload: true },
        pluginConfig: { "com.example.echo": { prefix: "v1:" } }
      }).pipe(Layer.provideMerge(Layer.mergeAll(StorageBackend.layerMemory, Identity.layerMemory())))

      yield* Effect.gen(function* () {
        const manager = yield* PluginManager
        const echo = (yield* ServiceRegistry).client(Principal.operator, Echo) as EchoClient
        const before = yield* manager.get("com.example.echo")
        assert.strictEqual(before.state, "running")
        assert.strictEqual(before.loader, "subprocess")
        assert.isTrue(
          fs.existsSync(path.join(dataDir, "plugin-data", "com.example.echo")),
          "its data directory"
        )
        assert.strictEqual(yield* echo.echo({ text: "a" }), "v1:a")

        // A call in flight when the file changes must finish on the old process.
        const inFlight = yield* Effect.fork(Effect.exit(echo.sleep({ millis: 600 })))
        yield* Effect.sleep("50 millis")
        const source = path.join(plugin, "index.mjs")
        fs.writeFileSync(
          source,
          fs
            .readFileSync(source, "utf8")
            .replace(
              "echo: ({ text }) => Effect.succeed(prefix + text)",
              "echo: ({ text }) => Effect.succeed(`${prefix}${text}!`)"
            )
        )

        const drained = yield* Fiber.join(inFlight)
        assert.strictEqual(drained._tag, "Success", "the in-flight call drained")
        const answer = yield* eventually(
          Effect.map(echo.echo({ text: "b" }), (text) => (text === "v1:b!" ? text : undefined)),
          "the new code to answer"
        )
        assert.strictEqual(answer, "v1:b!")
        const after = yield* manager.get("com.example.echo")
        assert.notStrictEqual(after.pid, before.pid)
        assert.strictEqual(after.state, "running")
      }).pipe(Effect.provide(node))
    })
  )

  it.scopedLive("a changed plugin.json registers the plugin again; an invalid one leaves it running", () =>
    Effect.gen(function* () {
      const { root, plugin, dataDir } = yield* workspace
      const node = BlackholeNode.layerWith({
        dataDir,
        discovery: { directories: [path.join(root, "plugins")] },
        development: { hotReload: true }
      }).pipe(Layer.provideMerge(Layer.mergeAll(StorageBackend.layerMemory, Identity.layerMemory())))

      yield* Effect.gen(function* () {
        const manager = yield* PluginManager
        const echo = (yield* ServiceRegistry).client(Principal.operator, Echo) as EchoClient
        const before = yield* manager.get("com.example.echo")
        assert.strictEqual(before.version, "1.0.0")
        const manifestFile = path.join(plugin, "plugin.json")
        const manifest = JSON.parse(fs.readFileSync(manifestFile, "utf8"))

        // A broken manifest is reported; the running plugin stays as it is.
        fs.writeFileSync(manifestFile, JSON.stringify({ ...manifest, version: "not a version" }))
        yield* Effect.sleep("1 second")
        const untouched = yield* manager.get("com.example.echo")
        assert.strictEqual(untouched.pid, before.pid)
        assert.strictEqual(untouched.state, "running")

        fs.writeFileSync(manifestFile, JSON.stringify({ ...manifest, version: "1.1.0" }))
        const after = yield* eventually(
          Effect.map(manager.get("com.example.echo"), (info) =>
            info.version === "1.1.0" && info.state === "running" ? info : undefined
          ),
          "the new manifest to be registered and running"
        )
        assert.notStrictEqual(after.pid, before.pid)
        assert.strictEqual(yield* echo.echo({ text: "x" }), "x")
      }).pipe(Effect.provide(node))
    })
  )
})
