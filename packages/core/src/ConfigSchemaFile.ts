/**
 * Checks an operator's plugin config against the plugin's `config.schema.json`
 * (named by the manifest's `configuration.$schema`, written by the plugin's
 * build from its Effect Schema) with a standard JSON Schema validator, before
 * any plugin code runs. The plugin decodes the config again with its own
 * Schema, which applies defaults.
 */

import * as fs from "node:fs/promises"
import * as path from "node:path"
import { InvalidConfig, Issue } from "@blackhole/sdk/Errors"
import type { PluginManifest } from "@blackhole/sdk/PluginManifest"
import { Ajv, type ValidateFunction } from "ajv"
import * as Effect from "effect/Effect"

const ajv = new Ajv({ allErrors: true, strict: false })
const compiled = new Map<string, ValidateFunction>()

const fail = (pluginId: string, message: string, at = "") =>
  new InvalidConfig({ pluginId, issues: [new Issue({ path: at, message })] })

/** `/a/0/b` → `a[0].b`, the path style of every other Blackhole error. */
const issuePath = (pointer: string): string =>
  pointer
    .split("/")
    .slice(1)
    .map((segment) => segment.replaceAll("~1", "/").replaceAll("~0", "~"))
    .map((segment, index) => (/^\d+$/.test(segment) ? `[${segment}]` : index === 0 ? segment : `.${segment}`))
    .join("")

/** Forgets the compiled schemas of the plugin in `directory` (hot reload: its file may have changed). */
export const invalidate = (directory: string): void => {
  for (const file of compiled.keys()) {
    if (!path.relative(directory, file).startsWith("..")) compiled.delete(file)
  }
}

/** Loads (once) and compiles the plugin's config schema file; absent `configuration` means nothing to check. */
const validatorFor = (directory: string, manifest: PluginManifest) =>
  Effect.gen(function* () {
    const reference = manifest.configuration?.$schema
    if (reference === undefined) return undefined
    const file = path.resolve(directory, reference)
    if (path.relative(directory, file).startsWith("..")) {
      return yield* fail(
        manifest.id,
        `configuration.$schema "${reference}" points outside the plugin directory`
      )
    }
    const cached = compiled.get(file)
    if (cached !== undefined) return cached
    const text = yield* Effect.tryPromise({
      try: () => fs.readFile(file, "utf8"),
      catch: () =>
        fail(manifest.id, `config schema ${file} cannot be read (does the plugin's build write it?)`)
    })
    const validate = yield* Effect.try({
      try: () => ajv.compile(JSON.parse(text) as object),
      catch: (error) =>
        fail(manifest.id, `config schema ${file} is not a valid JSON Schema: ${String(error)}`)
    })
    compiled.set(file, validate)
    return validate
  })

/** Validates `config` against the plugin's schema file; every problem is reported with its path. */
export const validate = (
  directory: string,
  manifest: PluginManifest,
  config: unknown
): Effect.Effect<void, InvalidConfig> =>
  Effect.gen(function* () {
    const validateFn = yield* validatorFor(directory, manifest)
    if (validateFn === undefined) return
    if (validateFn(config ?? {})) return
    return yield* new InvalidConfig({
      pluginId: manifest.id,
      issues: (validateFn.errors ?? []).map(
        (error) =>
          new Issue({
            path:
              error.keyword === "required" || error.keyword === "additionalProperties"
                ? [issuePath(error.instancePath), String(Object.values(error.params)[0])]
                    .filter((p) => p !== "")
                    .join(".")
                : issuePath(error.instancePath),
            message: error.message ?? error.keyword
          })
      )
    })
  })
