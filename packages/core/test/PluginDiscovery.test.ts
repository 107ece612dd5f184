import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as PluginDiscovery from "../src/PluginDiscovery.js"

const manifest = (id: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ id, name: id, version: "1.0.0", type: "service", ...extra })

/** A plugins directory: two good plugins, a bad one, a duplicate, and places discovery must not enter. */
const tree = Effect.acquireRelease(
  Effect.sync(() => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "bh-discovery-"))
    const write = (file: string, text: string) => {
      fs.mkdirSync(path.dirname(path.join(root, file)), { recursive: true })
      fs.writeFileSync(path.join(root, file), text)
    }
    write("plugins/alpha/plugin.json", manifest("com.example.alpha"))
    write(
      "plugins/group/beta/plugin.json",
      manifest("com.example.beta", { dependencies: { "com.example.alpha": "^1.0.0" } })
    )
    write("plugins/broken/plugin.json", manifest("Not A Valid Id", { version: "one" }))
    write("plugins/syntax/plugin.json", "{ not json")
    write("plugins/zz-duplicate/plugin.json", manifest("com.example.alpha"))
    // Not entered: a plugin's own subdirectories, node_modules, hidden dirs, the data directory.
    write("plugins/alpha/node_modules/inner/plugin.json", manifest("com.example.inner"))
    write("plugins/alpha/nested/plugin.json", manifest("com.example.nested"))
    write("plugins/node_modules/dep/plugin.json", manifest("com.example.dep"))
    write("plugins/.hidden/plugin.json", manifest("com.example.hidden"))
    write("plugins/data/plugin-data/x/plugin.json", manifest("com.example.data"))
    return root
  }),
  (root) => Effect.sync(() => fs.rmSync(root, { recursive: true, force: true }))
)

describe("PluginDiscovery", () => {
  it.scoped("finds valid plugins, reports bad ones with their reason, and skips what it must not enter", () =>
    Effect.gen(function* () {
      const root = yield* tree
      const { plugins, problems } = yield* PluginDiscovery.discover([path.join(root, "plugins")], {
        exclude: [path.join(root, "plugins/data")]
      })
      assert.deepStrictEqual(
        plugins.map((plugin) => plugin.manifest.id),
        ["com.example.alpha", "com.example.beta"]
      )
      assert.strictEqual(plugins[1]!.directory, path.join(root, "plugins/group/beta"))
      const byDir = new Map(problems.map((problem) => [path.basename(problem.directory), problem.error]))
      assert.deepStrictEqual(Array.from(byDir.keys()).sort(), ["broken", "syntax", "zz-duplicate"])
      const broken = byDir.get("broken")!
      assert.deepStrictEqual(broken.issues.map((issue) => issue.path).sort(), ["id", "version"])
      assert.include(byDir.get("syntax")!.message, "invalid JSON")
      assert.include(byDir.get("zz-duplicate")!.message, "already provided by")
    })
  )

  it.effect("a directory that does not exist finds nothing and fails nothing", () =>
    Effect.gen(function* () {
      const result = yield* PluginDiscovery.discover([path.join(os.tmpdir(), "bh-does-not-exist-42")])
      assert.deepStrictEqual(result, { plugins: [], problems: [] })
    })
  )
})
