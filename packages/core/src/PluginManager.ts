/**
 * The plugin manager: registry, compatibility and permission checks,
 * dependency order, lifecycle state machine. Every state change is published
 * as a `plugin.<state>` event. A plugin that fails to start, or whose program
 * fails, becomes `failed`; the node keeps running.
 */
import * as nodePath from "node:path"
import type {
  DependencyError,
  IncompatiblePlugin,
  InvalidConfig,
  InvalidManifest,
  MissingGrants,
  PluginFailure,
  PluginNotFound,
  ServiceNameTaken
} from "@blackhole/sdk/Errors"
import type { NodeInfo } from "@blackhole/sdk/NodeInfo"
import type * as Plugin from "@blackhole/sdk/Plugin"
import type { PluginManifest } from "@blackhole/sdk/PluginManifest"
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type { EventBus } from "./EventBus.js"
import type { HookRegistry } from "./HookRegistry.js"
import * as internal from "./internal/pluginManager.js"
import type { HostHandlers, LoaderKind, PluginLoader } from "./PluginLoader.js"
import type { PluginState } from "./PluginState.js"
import type { ResourceLimiter } from "./ResourceLimiter.js"
import type { ServiceRegistry } from "./ServiceRegistry.js"
import type { Storage } from "./Storage.js"

export { type PluginState, states } from "./PluginState.js"

/** A plugin's own writable directory under the node's data directory: `<dataDir>/plugin-data/<id>`. */
export const pluginDataDirectory = (dataDir: string, pluginId: string): string =>
  nodePath.join(dataDir, "plugin-data", pluginId)

/** How a plugin's process last ended (subprocess plugins). */
export interface LastExit {
  readonly reason: "clean" | "crash" | "oom" | "limit-memory" | "limit-sockets" | "hang" | "killed"
  readonly code: number | null
  readonly signal: string | null
  readonly at: string
}

/** A plugin as the manager reports it. */
export interface PluginInfo {
  readonly id: string
  readonly name: string
  readonly version: string
  readonly type: Plugin.PluginType
  readonly loader: LoaderKind
  readonly state: PluginState
  readonly restarts: number
  readonly pid: number | null
  readonly memoryBytes: number | null
  readonly lastExit: LastExit | null
  /** Why it is `failed` (or last failed), in words an operator can act on. */
  readonly error: string | null
  /** The plugin's effective grants. */
  readonly granted: ReadonlyArray<string>
  readonly dependencies: Readonly<Record<string, string>>
}

/** Registration options. */
export interface RegisterOptions {
  /** The operator's raw configuration for the plugin (decoded with the plugin's schema before start). */
  readonly config?: unknown
  /** What the supervisor does when the plugin's process ends on its own. */
  readonly restart?: RestartPolicy
  /** Whether `startAll` starts it. Default true; `false` leaves it registered until started by hand. */
  readonly autoStart?: boolean
}

/** Restart policy of a supervised (subprocess) plugin; every field has a default. */
export interface RestartPolicy {
  /** `always`, `on-failure` (not after a clean exit), or `never`. Default `on-failure`. */
  readonly policy?: "always" | "on-failure" | "never"
  /** First backoff delay; doubles per restart within the window, with jitter. Default 250 ms. */
  readonly initialDelayMillis?: number
  /** Backoff ceiling. Default 30 s. */
  readonly maxDelayMillis?: number
  /** This many restarts within `windowMillis` quarantine the plugin (crash loop). Default 5. */
  readonly maxRestarts?: number
  /** Default 60 s. */
  readonly windowMillis?: number
}

/** Why a start did not happen. */
export type StartError =
  | PluginNotFound
  | DependencyError
  | IncompatiblePlugin
  | MissingGrants
  | InvalidConfig
  | PluginFailure
  | ServiceNameTaken

/** The plugin manager. */
export class PluginManager extends Context.Tag("@blackhole/core/PluginManager")<
  PluginManager,
  {
    /** Registers a compiled-in plugin (its definition runs in this process). */
    readonly register: (
      definition: Plugin.Any,
      options?: RegisterOptions
    ) => Effect.Effect<void, InvalidManifest | DependencyError>
    /** Registers a plugin with any loader (the subprocess runtime uses this). */
    readonly registerWith: (
      manifest: PluginManifest,
      loader: PluginLoader,
      options?: RegisterOptions
    ) => Effect.Effect<void, DependencyError>
    /** Removes a plugin (stopping it first). */
    readonly unregister: (id: string) => Effect.Effect<void, PluginNotFound>
    /** Starts a registered, stopped, failed or quarantined plugin (a start lifts a quarantine). */
    readonly start: (id: string) => Effect.Effect<void, StartError>
    /** Idempotent: stopping a stopped plugin succeeds. */
    readonly stop: (id: string) => Effect.Effect<void, PluginNotFound>
    /** Stops and starts again; with `drainMillis`, in-flight calls get that long to finish first. */
    readonly restart: (
      id: string,
      options?: { readonly drainMillis?: number }
    ) => Effect.Effect<void, StartError>
    /** Starts every registered plugin in dependency order; failures are recorded per plugin, not raised. */
    readonly startAll: Effect.Effect<void>
    /** Stops every plugin in reverse dependency order. */
    readonly stopAll: Effect.Effect<void>
    readonly list: Effect.Effect<ReadonlyArray<PluginInfo>>
    readonly get: (id: string) => Effect.Effect<PluginInfo, PluginNotFound>
    /** A running plugin's own view of its health (null when it is not running); 2 s to answer. */
    readonly health: (id: string) => Effect.Effect<Plugin.HealthStatus | null, PluginNotFound>
    /** The handlers a running plugin returned (proxies into its process for a subprocess plugin). */
    readonly handlers: (id: string) => Effect.Effect<HostHandlers | undefined, PluginNotFound>
  }
>() {}

/** Manager options. */
export interface Options {
  readonly nodeInfo: NodeInfo["Type"]
  /** The operator's grants of sensitive permissions, by plugin id. */
  readonly grants?: Readonly<Record<string, ReadonlyArray<string>>>
  /** Restart policy for plugins registered without one. */
  readonly restart?: RestartPolicy
  /** The node's data directory: each plugin gets `<dataDir>/plugin-data/<id>/` as its NodeInfo.dataDirectory. */
  readonly dataDir?: string
  /** How many plugins `startAll` starts at once (each still after its dependencies). Default 8. */
  readonly startConcurrency?: number
  /** Parts of the node a started plugin's handlers connect to (HTTP routes, P2P protocols…). */
  readonly attachments?: ReadonlyArray<Attachment>
}

/**
 * Connects what a started plugin returned to a part of the node, for as long
 * as it runs: it runs in the plugin's Scope, so closing it detaches. A failure
 * fails the plugin's start (say why, e.g. a missing grant).
 */
export type Attachment = (plugin: {
  readonly manifest: PluginManifest
  readonly granted: ReadonlyArray<string>
  readonly handlers: HostHandlers
}) => Effect.Effect<void, PluginFailure, Scope.Scope>

/** The manager; plugins are stopped in reverse dependency order when its Scope closes. */
export const layer: (
  options: Options
) => Layer.Layer<
  PluginManager,
  never,
  EventBus | Storage | ServiceRegistry | HookRegistry | ResourceLimiter
> = internal.layer
