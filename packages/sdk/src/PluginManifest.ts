/**
 * `plugin.json`: the original design's manifest fields plus `main` and `dependencies`.
 *
 * Decoding reports every bad field at once (path + reason) in one `InvalidManifest`, so an
 * author fixes a manifest in one round trip. Unknown fields are ignored rather than
 * rejected: a manifest written for a newer node still loads on an older one, and the
 * original design's example validates unchanged.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as semver from "semver"
import { InvalidManifest, Issue } from "./Errors.js"
import { fromParseError } from "./internal/issues.js"
import { PermissionString } from "./Permission.js"
import { ByteSize, parseBytes, parseRate, RateLimitString, type ResourceLimits } from "./ResourceLimits.js"

const show = (value: string): string => JSON.stringify(value)

// DNS-style labels: lowercase letters, digits and inner hyphens. The id also names the
// plugin's data directory, so the pattern leaves no room for "/", ".." or upper case.
const PLUGIN_ID = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+$/

const checkPluginId = (id: string): string | true =>
  PLUGIN_ID.test(id) ||
  `${show(id)} must be reverse-DNS like "com.example.plugin" (two or more dot-separated labels of lowercase letters, digits and hyphens)`

/** A reverse-DNS plugin id such as `com.example.myplugin`. */
export const PluginId = Schema.String.pipe(
  Schema.filter((id) => checkPluginId(id), { identifier: "PluginId" })
)

/** An exact semantic version such as `1.2.3` or `2.0.0-beta.1`. */
export const SemVer = Schema.String.pipe(
  Schema.filter(
    // semver.valid also tolerates a leading "v"/"=" and surrounding spaces; a manifest should not.
    (version) =>
      (/^\d/.test(version) && version.trim() === version && semver.valid(version) !== null) ||
      `${show(version)} is not a semantic version (expected MAJOR.MINOR.PATCH like "1.2.3")`,
    { identifier: "SemVer" }
  )
)

const checkRange = (range: string): string | true =>
  (range.trim() !== "" && semver.validRange(range) !== null) ||
  `${show(range)} is not a version range (expected e.g. "^1.2.0" or ">=1.0.0 <3.0.0")`

/** A semver range such as `^1.2.0` or `>=1.0.0 <3.0.0`, as in package.json. */
export const SemVerRange = Schema.String.pipe(
  Schema.filter((range) => checkRange(range), { identifier: "SemVerRange" })
)

/** A mesh service name: lowercase, starting with a letter, e.g. `identity` or `key-value`. */
export const ServiceName = Schema.String.pipe(
  Schema.filter(
    (name) =>
      /^[a-z][a-z0-9-]*$/.test(name) ||
      `${show(name)} is not a service name (lowercase letters, digits and hyphens, starting with a letter)`,
    { identifier: "ServiceName" }
  )
)

const formatActual = (actual: unknown): string => {
  if (actual === undefined) return "undefined"
  try {
    return JSON.stringify(actual) ?? String(actual)
  } catch {
    return String(actual)
  }
}

/** The plugin kinds of the original design; each has its own contract type. */
export const PluginType = Schema.Literal("service", "protocol", "storage", "integration").annotations({
  // override: otherwise each literal reports its own "Expected ..." issue.
  message: (issue) => ({
    message: `must be one of "service", "protocol", "storage", "integration" (got ${formatActual(issue.actual)})`,
    override: true
  })
})
/** @see PluginType */
export type PluginType = typeof PluginType.Type

const NonEmpty = Schema.String.pipe(
  Schema.filter((text) => text.trim() !== "" || "must not be empty", { identifier: "NonEmptyString" })
)

// A path inside the plugin package: the host resolves it against the plugin directory and
// must never be led outside it.
const RelativePath = Schema.String.pipe(
  Schema.filter(
    (path) => {
      if (path.trim() === "") return "must not be empty"
      if (/^(?:[/\\]|[a-zA-Z]:)/.test(path)) return `${show(path)} must be relative to the plugin directory`
      if (path.split(/[/\\]/).includes("..")) {
        return `${show(path)} must not leave the plugin directory with ".."`
      }
      return true
    },
    { identifier: "RelativePath" }
  )
)

/** `compatibility`: the node versions the plugin supports, both ends inclusive. */
export const Compatibility = Schema.Struct({
  minVersion: SemVer,
  maxVersion: SemVer
}).pipe(
  Schema.filter(
    ({ maxVersion, minVersion }) =>
      semver.lte(minVersion, maxVersion) || {
        path: ["maxVersion"],
        message: `maxVersion ${show(maxVersion)} is lower than minVersion ${show(minVersion)}`
      },
    { identifier: "Compatibility" }
  )
)

/** `dependencies`: plugin id → semver range of the version that plugin must have. */
export const Dependencies = Schema.Record({ key: Schema.String, value: Schema.String }).pipe(
  // Checked here rather than by the Record's key/value schemas: a refined key schema would
  // silently drop a bad key, and this way a bad key and a bad range are reported together.
  Schema.filter(
    (dependencies) =>
      Object.entries(dependencies).flatMap(([id, range]) => {
        const idCheck = checkPluginId(id)
        const rangeCheck = checkRange(range)
        return [
          ...(idCheck === true ? [] : [{ path: [id], message: `dependency id ${idCheck}` }]),
          ...(rangeCheck === true ? [] : [{ path: [id], message: rangeCheck }])
        ]
      }),
    { identifier: "Dependencies" }
  )
)

// One message for "1.5", "-1" and "0" alike, instead of Int's and positive's separate ones.
const Count = (min: 0 | 1) =>
  Schema.Number.pipe(
    Schema.filter(
      (n) =>
        (Number.isSafeInteger(n) && n >= min) ||
        `must be a ${min === 0 ? "non-negative" : "positive"} integer (got ${n})`,
      { identifier: min === 0 ? "NonNegativeInt" : "PositiveInt" }
    )
  )

/** `resources`: the limits the Sandbox enforces; absent fields take the node's defaults. */
export const Resources = Schema.Struct({
  /** Heap + RSS ceiling, e.g. `"100MB"` (binary multiples). */
  maxMemory: Schema.optionalWith(ByteSize, { exact: true }),
  /** Concurrent fibers / in-flight calls per direction (the original design's name). */
  maxGoroutines: Schema.optionalWith(Count(1), { exact: true }),
  /** Plugin→host calls per window, e.g. `"1000/min"`. */
  rateLimit: Schema.optionalWith(RateLimitString, { exact: true }),
  /** Open sockets of the plugin's process; 0 forbids networking. */
  maxSockets: Schema.optionalWith(Count(0), { exact: true })
})

/** The `plugin.json` schema; decode with {@link decode} or {@link decodeJson} to get every issue. */
export const PluginManifest = Schema.Struct({
  /** Reverse-DNS id, unique per node; also the plugin's data directory name. */
  id: PluginId,
  /** Human-readable name. */
  name: NonEmpty,
  /** The plugin's own version (semver). */
  version: SemVer,
  type: PluginType,
  author: Schema.optionalWith(Schema.String, { exact: true }),
  description: Schema.optionalWith(Schema.String, { exact: true }),
  /** An SPDX license expression, e.g. `MIT`; not checked against the SPDX list. */
  license: Schema.optionalWith(Schema.String, { exact: true }),
  /** Checked against the node's version at load time (see {@link isCompatible}). */
  compatibility: Schema.optionalWith(Compatibility, { exact: true }),
  /** `resource:action[:scope]` strings the plugin requests. */
  permissions: Schema.optionalWith(Schema.Array(PermissionString), { default: () => [], exact: true }),
  resources: Schema.optionalWith(Resources, { exact: true }),
  /** Points at the JSON Schema the build generated from the plugin's config Schema. */
  configuration: Schema.optionalWith(Schema.Struct({ $schema: NonEmpty }), { exact: true }),
  /** The ES module whose default export is the plugin definition, relative to plugin.json. */
  main: Schema.optionalWith(RelativePath, { default: () => "dist/index.js", exact: true }),
  /**
   * A self-contained build of the plugin and the SDK runtime (`PluginRuntime.runMain(definition)`
   * as its entry), relative to plugin.json. When present the host runs it directly: one module
   * graph, tree-shaken, so the process starts faster and smaller than one that imports `main`.
   * `scripts/bundle-plugins.mjs` builds it with a V8 code cache (see docs/protocol.md); it
   * writes a CommonJS launcher, so name a `.cjs` file (e.g. `dist/plugin.bundle.cjs`).
   */
  bundle: Schema.optionalWith(RelativePath, { exact: true }),
  /** Other plugins this one needs: plugin id → semver range of that plugin's version. */
  dependencies: Schema.optionalWith(Dependencies, { default: () => ({}), exact: true }),
  /** Mesh service names the plugin registers. */
  services: Schema.optionalWith(Schema.Array(ServiceName), { default: () => [], exact: true })
}).annotations({ identifier: "PluginManifest" })

/** A decoded manifest, defaults applied. */
export type PluginManifest = typeof PluginManifest.Type
/** A manifest as written in `plugin.json`. */
export type PluginManifestEncoded = typeof PluginManifest.Encoded

const toInvalidManifest = (error: ParseResult.ParseError, source: string): InvalidManifest =>
  new InvalidManifest({ source, issues: fromParseError(error) })

const decodeManifest = Schema.decodeUnknown(PluginManifest, { errors: "all", onExcessProperty: "ignore" })

/** Decodes an already-parsed manifest; `source` (a file path or plugin id) is named in the error. */
export const decode = (input: unknown, source: string): Effect.Effect<PluginManifest, InvalidManifest> =>
  // Checked up front: the schema's own message here would be "Expected Struct (Encoded side)".
  typeof input !== "object" || input === null || Array.isArray(input)
    ? Effect.fail(
        new InvalidManifest({
          source,
          issues: [
            new Issue({
              path: "",
              message: `must be a JSON object (got ${Array.isArray(input) ? "an array" : formatActual(input)})`
            })
          ]
        })
      )
    : decodeManifest(input).pipe(Effect.mapError((error) => toInvalidManifest(error, source)))

/** Parses and decodes `plugin.json` text; a JSON syntax error is an `InvalidManifest` at the root. */
export const decodeJson = (text: string, source: string): Effect.Effect<PluginManifest, InvalidManifest> =>
  Effect.try({
    // Editors on Windows may save a BOM, which JSON.parse rejects.
    try: (): unknown => JSON.parse(text.replace(/^\uFEFF/, "")),
    catch: (error) =>
      new InvalidManifest({
        source,
        issues: [
          new Issue({
            path: "",
            message: `invalid JSON: ${error instanceof Error ? error.message : String(error)}`
          })
        ]
      })
  }).pipe(Effect.flatMap((input) => decode(input, source)))

// The schema has already validated these strings; a failure here means the manifest
// bypassed decoding, which is a bug, not a reason to run the plugin unlimited.
const parsed = <A>(result: Either.Either<A, string>): A =>
  Either.getOrThrowWith(result, (message) => new Error(`manifest was not decoded: ${message}`))

/** The limits the Sandbox enforces, parsed from `resources` (`maxGoroutines` → `maxConcurrency`). */
export const resourceLimits = (manifest: PluginManifest): ResourceLimits => {
  const resources = manifest.resources
  return {
    maxMemoryBytes: resources?.maxMemory === undefined ? undefined : parsed(parseBytes(resources.maxMemory)),
    maxConcurrency: resources?.maxGoroutines,
    rateLimit: resources?.rateLimit === undefined ? undefined : parsed(parseRate(resources.rateLimit)),
    maxSockets: resources?.maxSockets
  }
}

/**
 * Whether this node's version lies in the manifest's `compatibility` range (inclusive at both
 * ends). No `compatibility` means compatible; an unparseable node version is not.
 */
export const isCompatible = (manifest: PluginManifest, nodeVersion: string): boolean => {
  const compatibility = manifest.compatibility
  if (compatibility === undefined) return true
  if (semver.valid(nodeVersion) === null) return false
  return (
    semver.gte(nodeVersion, compatibility.minVersion) && semver.lte(nodeVersion, compatibility.maxVersion)
  )
}
