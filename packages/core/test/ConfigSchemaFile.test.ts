import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as PluginConfig from "@blackhole/sdk/PluginConfig"
import * as PluginManifest from "@blackhole/sdk/PluginManifest"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as ConfigSchemaFile from "../src/ConfigSchemaFile.js"

// The plugin's own Schema is the source of truth; its build writes config.schema.json from it.
const Config = PluginConfig.make(
  Schema.Struct({
    url: Schema.String,
    retries: Schema.optionalWith(Schema.Int.pipe(Schema.between(0, 10)), { default: () => 3 }),
    events: Schema.optionalWith(Schema.Array(Schema.String), { default: () => ["*"] })
  })
)

const pluginDir = Effect.acquireRelease(
  Effect.sync(() => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bh-config-"))
    fs.writeFileSync(path.join(dir, "config.schema.json"), JSON.stringify(PluginConfig.toJsonSchema(Config)))
    return dir
  }),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

const manifest = (schema: string | undefined) =>
  PluginManifest.decode(
    {
      id: "com.example.hook",
      name: "Hook",
      version: "1.0.0",
      type: "integration",
      ...(schema === undefined ? {} : { configuration: { $schema: schema } })
    },
    "test"
  )

describe("ConfigSchemaFile", () => {
  it.scoped("accepts a config that matches the schema the plugin's Schema produced", () =>
    Effect.gen(function* () {
      const dir = yield* pluginDir
      yield* ConfigSchemaFile.validate(dir, yield* manifest("./config.schema.json"), {
        url: "http://127.0.0.1:1",
        retries: 2
      })
    })
  )

  it.scoped("reports every bad field with its path before any plugin code runs", () =>
    Effect.gen(function* () {
      const dir = yield* pluginDir
      const error = yield* Effect.flip(
        ConfigSchemaFile.validate(dir, yield* manifest("./config.schema.json"), { retries: 99, events: [1] })
      )
      const paths = error.issues.map((issue) => issue.path)
      assert.include(paths, "url")
      assert.include(paths, "retries")
      assert.include(paths, "events[0]")
      assert.include(error.message, "com.example.hook")
    })
  )

  it.scoped("a missing schema file or one outside the plugin directory is a clear error", () =>
    Effect.gen(function* () {
      const dir = yield* pluginDir
      const missing = yield* Effect.flip(ConfigSchemaFile.validate(dir, yield* manifest("./nope.json"), {}))
      assert.include(missing.message, "cannot be read")
      const outside = yield* Effect.flip(
        ConfigSchemaFile.validate(dir, yield* manifest("../../etc/passwd"), {})
      )
      assert.include(outside.message, "outside the plugin directory")
    })
  )

  it.effect("a plugin without configuration has nothing to check", () =>
    Effect.gen(function* () {
      yield* ConfigSchemaFile.validate(os.tmpdir(), yield* manifest(undefined), { anything: true })
    })
  )
})
