/**
 * A plugin's lifecycle states, everywhere (API, CLI, metrics). Its own module,
 * with no imports, so clients of the admin API can use it without loading the core.
 */

/** The lifecycle states, in lifecycle order. */
export const states = [
  "registered",
  "starting",
  "running",
  "stopping",
  "stopped",
  "restarting",
  "failed",
  "quarantined"
] as const
/** A lifecycle state. */
export type PluginState = (typeof states)[number]
