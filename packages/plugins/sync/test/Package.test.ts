/** The package's committed files agree with its code: plugin.json and config.schema.json. */
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"
import * as PluginConfig from "@blackhole/sdk/PluginConfig"
import * as PluginManifest from "@blackhole/sdk/PluginManifest"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import definition from "../src/index.js"

const file = (name: string) => fileURLToPath(new URL(`../${name}`, import.meta.url))

describe("sync package", () => {
  it("config.schema.json is what the config Schema produces", () => {
    const committed = JSON.parse(fs.readFileSync(file("config.schema.json"), "utf8"))
    assert.deepStrictEqual(
      committed,
      PluginConfig.toJsonSchema(definition.config),
      "config.schema.json is stale: regenerate it with `npm run build && npm run schema -w @blackhole/plugin-sync` and commit it"
    )
  })

  it.effect("plugin.json is the definition's manifest", () =>
    Effect.gen(function* () {
      const fromJson = yield* PluginManifest.decodeJson(
        fs.readFileSync(file("plugin.json"), "utf8"),
        "plugin.json"
      )
      const fromDefinition = yield* PluginManifest.decode(definition.manifest, "src/index.ts")
      assert.deepStrictEqual(fromJson, fromDefinition)
      assert.strictEqual(fromJson.configuration?.$schema, "config.schema.json")
      assert.strictEqual(fromJson.main, "dist/index.js")
    })
  )
})
