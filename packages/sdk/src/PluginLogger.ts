/**
 * The plugin's logger. Lines are tagged with the plugin id by the host, in
 * process or across the process boundary alike.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

/** Log levels a plugin may use. */
export const LogLevel = Schema.Literal("debug", "info", "warn", "error")
/** @see LogLevel */
export type LogLevel = typeof LogLevel.Type

/** Structured key/value context attached to a line (JSON values). */
export type Annotations = Readonly<Record<string, unknown>>

/** Context service: plugin-scoped logging. */
export class PluginLogger extends Context.Tag("@blackhole/sdk/PluginLogger")<
  PluginLogger,
  {
    readonly log: (level: LogLevel, message: string, annotations?: Annotations) => Effect.Effect<void>
  }
>() {}

const at =
  (level: LogLevel) =>
  (message: string, annotations?: Annotations): Effect.Effect<void, never, PluginLogger> =>
    Effect.flatMap(PluginLogger, (logger) => logger.log(level, message, annotations))

/** Logs at debug level. */
export const debug = at("debug")
/** Logs at info level. */
export const info = at("info")
/** Logs at warn level. */
export const warn = at("warn")
/** Logs at error level. */
export const error = at("error")
