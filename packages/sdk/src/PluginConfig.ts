/**
 * A plugin's configuration. The Effect Schema in the plugin's code is the
 * source of truth: the host decodes the operator's config with it (defaults
 * applied) before the program runs, and the program reads the decoded value
 * with full types through the accessor `make` returns.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as JSONSchema from "effect/JSONSchema"
import * as Schema from "effect/Schema"
import { InvalidConfig } from "./Errors.js"
import { fromParseError } from "./internal/issues.js"

/** Context service holding the decoded configuration (typed through `make`). */
export class PluginConfig extends Context.Tag("@blackhole/sdk/PluginConfig")<PluginConfig, unknown>() {}

/** A config schema and the typed accessor for the decoded value. */
export interface ConfigSchema<A, I = unknown> extends Effect.Effect<A, never, PluginConfig> {
  readonly schema: Schema.Schema<A, I>
}

/**
 * Declares a plugin's config schema; `yield* Config` in the program gives the
 * decoded value. The host decoded it with this same schema, so no re-check.
 */
export const make = <A, I>(schema: Schema.Schema<A, I>): ConfigSchema<A, I> =>
  Object.assign(
    Effect.map(PluginConfig, (value) => value as A),
    { schema }
  )

/** A plugin with no configuration. */
export const none: ConfigSchema<{}, {}> = make(Schema.Struct({}))

/** The JSON Schema for `config.schema.json`, written by a plugin's build. */
export const toJsonSchema = <A, I>(config: ConfigSchema<A, I>): JSONSchema.JsonSchema7Root =>
  JSONSchema.make(config.schema)

/** Decodes an operator's raw config (defaults applied); every bad field is reported with its path. */
export const decode = <A, I>(
  config: ConfigSchema<A, I>,
  raw: unknown,
  pluginId: string
): Effect.Effect<A, InvalidConfig> =>
  Schema.decodeUnknown(config.schema, { errors: "all", onExcessProperty: "error" })(raw ?? {}).pipe(
    Effect.mapError((error) => new InvalidConfig({ pluginId, issues: fromParseError(error) }))
  )
