/** The package's committed files agree with its code: plugin.json and config.schema.json. */
import { fileURLToPath } from "node:url"
import { PluginTest } from "@blackhole/sdk/testing"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import definition from "../src/index.js"

const packageDir = fileURLToPath(new URL("..", import.meta.url))

describe("backup package", () => {
  it.effect(
    "plugin.json and config.schema.json agree with the code (regenerate: npm run schema -w @blackhole/plugin-backup)",
    () =>
      Effect.gen(function* () {
        assert.deepStrictEqual(yield* PluginTest.packageDrift(packageDir, definition), [])
        assert.strictEqual(definition.manifest.configuration?.$schema, "config.schema.json")
        assert.strictEqual(definition.manifest.main, "dist/index.js")
      })
  )
})
