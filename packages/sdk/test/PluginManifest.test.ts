import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type { InvalidManifest } from "../src/Errors.js"
import * as PluginManifest from "../src/PluginManifest.js"

// Verbatim from the original design (reference/plugin-architecture.md, "Plugin Metadata").
const ORIGINAL_EXAMPLE = `{
  "id": "com.example.myplugin",
  "name": "My Plugin",
  "version": "1.0.0",
  "type": "service",
  "author": "Example Corp",
  "description": "Adds custom functionality",
  "license": "MIT",
  
  "compatibility": {
    "minVersion": "1.0.0",
    "maxVersion": "2.0.0"
  },
  
  "permissions": [
    "storage:read",
    "storage:write",
    "events:publish",
    "service:identity:read"
  ],
  
  "resources": {
    "maxMemory": "100MB",
    "maxGoroutines": 50,
    "rateLimit": "1000/min"
  },
  
  "configuration": {
    "$schema": "./config.schema.json"
  }
}`

const minimal = { id: "dev.blackhole.analytics", name: "Analytics", version: "0.1.0", type: "service" }

// Success lands in the error channel, so a manifest that wrongly decodes fails the test.
const failure = (input: unknown): Effect.Effect<InvalidManifest, PluginManifest.PluginManifest> =>
  Effect.flip(PluginManifest.decode(input, "test/plugin.json"))

const messageAt = (error: InvalidManifest, path: string): string => {
  const issue = error.issues.find((candidate) => candidate.path === path)
  return issue?.message ?? assert.fail(`no issue at ${JSON.stringify(path)}; issues: ${error.message}`)
}

describe("PluginManifest.decode", () => {
  it.effect("accepts the original design's example unchanged, with defaults", () =>
    Effect.gen(function* () {
      const manifest = yield* PluginManifest.decodeJson(ORIGINAL_EXAMPLE, "example/plugin.json")
      assert.strictEqual(manifest.id, "com.example.myplugin")
      assert.strictEqual(manifest.type, "service")
      assert.deepStrictEqual(manifest.compatibility, { minVersion: "1.0.0", maxVersion: "2.0.0" })
      assert.deepStrictEqual(manifest.permissions, [
        "storage:read",
        "storage:write",
        "events:publish",
        "service:identity:read"
      ])
      assert.deepStrictEqual(manifest.resources, {
        maxMemory: "100MB",
        maxGoroutines: 50,
        rateLimit: "1000/min"
      })
      assert.deepStrictEqual(manifest.configuration, { $schema: "./config.schema.json" })
      assert.strictEqual(manifest.main, "dist/index.js")
      assert.deepStrictEqual(manifest.dependencies, {})
      assert.deepStrictEqual(manifest.services, [])

      assert.deepStrictEqual(PluginManifest.resourceLimits(manifest), {
        maxMemoryBytes: 100 * 1024 * 1024,
        maxConcurrency: 50,
        rateLimit: { limit: 1000, windowMillis: 60_000, text: "1000/min" },
        maxSockets: undefined
      })
    })
  )

  it.effect("applies defaults to a minimal manifest and ignores unknown fields", () =>
    Effect.gen(function* () {
      const manifest = yield* PluginManifest.decode({ ...minimal, futureField: { x: 1 } }, "minimal")
      assert.deepStrictEqual(manifest, {
        ...minimal,
        type: "service",
        permissions: [],
        main: "dist/index.js",
        dependencies: {},
        services: []
      })
      assert.deepStrictEqual(PluginManifest.resourceLimits(manifest), {
        maxMemoryBytes: undefined,
        maxConcurrency: undefined,
        rateLimit: undefined,
        maxSockets: undefined
      })
    })
  )

  it.effect("accepts main, dependencies and services", () =>
    Effect.gen(function* () {
      const manifest = yield* PluginManifest.decode(
        {
          ...minimal,
          main: "build/plugin.mjs",
          dependencies: { "dev.blackhole.identity": "^1.2.0", "com.example.other": ">=1.0.0 <3.0.0" },
          services: ["analytics", "key-value2"],
          resources: { maxSockets: 0 }
        },
        "full"
      )
      assert.strictEqual(manifest.main, "build/plugin.mjs")
      assert.deepStrictEqual(manifest.dependencies, {
        "dev.blackhole.identity": "^1.2.0",
        "com.example.other": ">=1.0.0 <3.0.0"
      })
      assert.deepStrictEqual(manifest.services, ["analytics", "key-value2"])
      assert.strictEqual(PluginManifest.resourceLimits(manifest).maxSockets, 0)
    })
  )

  it.effect("reports every bad field in one InvalidManifest", () =>
    Effect.gen(function* () {
      const error = yield* failure({
        id: "MyPlugin",
        name: "Bad",
        version: "1.0",
        type: "daemon",
        permissions: ["storage:read", "events:publish", "not a permission"],
        resources: { maxMemory: "100XB", maxGoroutines: 0, rateLimit: "10/week", maxSockets: -1 }
      })
      assert.strictEqual(error._tag, "InvalidManifest")
      assert.strictEqual(error.source, "test/plugin.json")
      const paths = error.issues.map((issue) => issue.path)
      for (const path of [
        "id",
        "version",
        "type",
        "permissions[2]",
        "resources.maxMemory",
        "resources.maxGoroutines",
        "resources.rateLimit",
        "resources.maxSockets"
      ]) {
        assert.include(paths, path)
      }
      assert.notInclude(paths, "permissions[0]")
      assert.notInclude(paths, "name")

      assert.include(messageAt(error, "id"), 'must be reverse-DNS like "com.example.plugin"')
      assert.include(messageAt(error, "version"), '"1.0" is not a semantic version')
      assert.include(
        messageAt(error, "type"),
        'must be one of "service", "protocol", "storage", "integration"'
      )
      assert.include(messageAt(error, "type"), '"daemon"')
      assert.include(messageAt(error, "resources.maxMemory"), 'invalid byte size "100XB"')
      assert.include(messageAt(error, "resources.rateLimit"), 'invalid rate limit "10/week"')
      assert.include(messageAt(error, "resources.maxGoroutines"), "positive integer")
      assert.include(messageAt(error, "resources.maxSockets"), "non-negative integer")
      // The error's message lists every issue, so a log line alone is enough to fix the file.
      assert.include(error.message, "test/plugin.json")
      assert.include(error.message, "resources.maxMemory")
    })
  )

  it.effect("reports missing required fields", () =>
    Effect.gen(function* () {
      const error = yield* failure({})
      assert.deepStrictEqual(error.issues.map((issue) => issue.path).sort(), [
        "id",
        "name",
        "type",
        "version"
      ])
    })
  )

  it.effect("rejects a non-object manifest at the root", () =>
    Effect.gen(function* () {
      for (const input of [[1, 2], null, "plugin", 42]) {
        const error = yield* failure(input)
        assert.strictEqual(error.issues.length, 1)
        assert.strictEqual(error.issues[0]?.path, "")
        assert.include(error.issues[0]?.message, "must be a JSON object")
      }
    })
  )

  it.effect("rejects ids that are not reverse-DNS", () =>
    Effect.gen(function* () {
      for (const id of [
        "myplugin",
        "Com.Example.Plugin",
        "com..example",
        "com.example.",
        "-com.example",
        "com/x.y"
      ]) {
        const error = yield* failure({ ...minimal, id })
        assert.include(messageAt(error, "id"), "reverse-DNS", id)
      }
    })
  )

  it.effect("rejects main paths outside the plugin directory", () =>
    Effect.gen(function* () {
      for (const main of [
        "/etc/passwd",
        "../other/index.js",
        "dist/../../x.js",
        "C:\\x.js",
        "\\\\host\\x.js",
        ""
      ]) {
        const error = yield* failure({ ...minimal, main })
        messageAt(error, "main")
      }
    })
  )

  it.effect("rejects bad dependencies, services and compatibility with precise paths", () =>
    Effect.gen(function* () {
      const error = yield* failure({
        ...minimal,
        dependencies: { "com.example.other": "not a range" },
        services: ["ok", "Bad_Name"],
        compatibility: { minVersion: "v1.0.0", maxVersion: "2.0.0" },
        configuration: { $schema: "" }
      })
      assert.include(messageAt(error, 'dependencies["com.example.other"]'), "is not a version range")
      assert.include(messageAt(error, "services[1]"), '"Bad_Name" is not a service name')
      assert.include(messageAt(error, "compatibility.minVersion"), "is not a semantic version")
      assert.include(messageAt(error, "configuration.$schema"), "must not be empty")
    })
  )

  it.effect("rejects dependency keys that are not plugin ids", () =>
    Effect.gen(function* () {
      // A bad key must be reported, not silently dropped, even next to a bad range.
      const error = yield* failure({ ...minimal, dependencies: { Other: "^1.0.0", "com.example.x": "nope" } })
      assert.include(messageAt(error, "dependencies.Other"), 'dependency id "Other" must be reverse-DNS')
      assert.include(messageAt(error, 'dependencies["com.example.x"]'), "is not a version range")
    })
  )

  it.effect("rejects a compatibility range whose max is below its min", () =>
    Effect.gen(function* () {
      const error = yield* failure({
        ...minimal,
        compatibility: { minVersion: "2.0.0", maxVersion: "1.0.0" }
      })
      assert.include(
        messageAt(error, "compatibility.maxVersion"),
        'maxVersion "1.0.0" is lower than minVersion "2.0.0"'
      )
    })
  )
})

describe("PluginManifest.decodeJson", () => {
  it.effect("turns a JSON syntax error into an InvalidManifest at the root", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        PluginManifest.decodeJson('{ "id": "com.example.x", }', "broken/plugin.json")
      )
      assert.strictEqual(error._tag, "InvalidManifest")
      assert.strictEqual(error.source, "broken/plugin.json")
      assert.strictEqual(error.issues.length, 1)
      assert.strictEqual(error.issues[0]?.path, "")
      assert.match(error.issues[0]?.message ?? "", /^invalid JSON: /)
    })
  )

  it.effect("tolerates a byte-order mark", () =>
    Effect.gen(function* () {
      const manifest = yield* PluginManifest.decodeJson(`\uFEFF${JSON.stringify(minimal)}`, "bom")
      assert.strictEqual(manifest.id, minimal.id)
    })
  )
})

describe("PluginManifest.isCompatible", () => {
  it.effect("is inclusive at both ends", () =>
    Effect.gen(function* () {
      const manifest = yield* PluginManifest.decodeJson(ORIGINAL_EXAMPLE, "example")
      assert.isFalse(PluginManifest.isCompatible(manifest, "0.9.9"))
      assert.isTrue(PluginManifest.isCompatible(manifest, "1.0.0"))
      assert.isTrue(PluginManifest.isCompatible(manifest, "1.5.3"))
      assert.isTrue(PluginManifest.isCompatible(manifest, "2.0.0"))
      assert.isFalse(PluginManifest.isCompatible(manifest, "2.0.1"))
      assert.isFalse(PluginManifest.isCompatible(manifest, "not-a-version"))
    })
  )

  it.effect("treats an absent compatibility as compatible", () =>
    Effect.gen(function* () {
      const manifest = yield* PluginManifest.decode(minimal, "minimal")
      assert.isTrue(PluginManifest.isCompatible(manifest, "0.0.1"))
      assert.isTrue(PluginManifest.isCompatible(manifest, "99.0.0"))
    })
  )
})
