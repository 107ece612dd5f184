/**
 * Loaders turn a registered plugin into a running one. The compiled-in loader
 * runs a definition's program in this process; the subprocess loader (its own
 * module) runs the same definition in a supervised child. Both receive the
 * same sandboxed context, so a plugin behaves the same under either.
 */
import { type InvalidConfig, PluginFailure } from "@blackhole/sdk/Errors"
import type * as Plugin from "@blackhole/sdk/Plugin"
import type { ContextServices, HealthStatus } from "@blackhole/sdk/Plugin"
import type { PluginManifest } from "@blackhole/sdk/PluginManifest"
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
import * as Cause from "effect/Cause"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { LastExit } from "./PluginManager.js"
import type { DirectDispatch } from "./ServiceRegistry.js"

/** How a plugin runs. */
export type LoaderKind = "inprocess" | "subprocess"

/** A service a running plugin serves on the mesh. */
export interface ServedService {
  readonly contract: ServiceContract.Any
  readonly dispatch: ServiceContract.Dispatch
  /** The dispatch bounds each call itself (see ServiceRegistry.RegisterOptions). */
  readonly selfTimed?: boolean
  /** The same service as a callback dispatch, for the mesh's lean per-call path (see ServiceRegistry.RegisterOptions). */
  readonly direct?: DirectDispatch
}

/** Every handler a plugin of any type may have returned, as the host uses them. */
export type HostHandlers = Plugin.CommonHandlers &
  Partial<Plugin.StorageHandlers & Plugin.ProtocolHandlers & Plugin.IntegrationHandlers>

/** A plugin that has started: what it serves, and how to ask its health. */
export interface LoadedPlugin {
  readonly services: ReadonlyArray<ServedService>
  readonly health: Effect.Effect<HealthStatus>
  /** The handlers the program returned; for a subprocess plugin, proxies that call into its process. */
  readonly handlers: HostHandlers
  /** The OS process id, for subprocess plugins. */
  readonly pid: number | null
  /** Completes when the plugin's process ends by itself or is killed (never for in-process plugins). */
  readonly exit: Effect.Effect<LastExit> | undefined
  /** The process's resident memory, sampled (null in process). */
  readonly memoryBytes: () => number | null
}

/** What a loader is given to start a plugin. */
export interface LoadContext {
  readonly manifest: PluginManifest
  /** The plugin's effective grants (e.g. `fs:write:<path>` widens its process sandbox). */
  readonly granted: ReadonlyArray<string>
  readonly context: Context.Context<ContextServices>
}

/** A loader; `load` runs in the plugin's Scope, whose closing is the plugin's stop. */
export interface PluginLoader {
  readonly kind: LoaderKind
  /** Decodes the operator's raw config for this plugin (defaults applied) before any plugin code runs. */
  readonly decodeConfig: (raw: unknown) => Effect.Effect<unknown, InvalidConfig>
  readonly load: (
    context: LoadContext
  ) => Effect.Effect<LoadedPlugin, PluginFailure | InvalidConfig, Scope.Scope>
}

const healthy: Effect.Effect<HealthStatus> = Effect.succeed({ status: "healthy" })

/** Runs a definition's program in this process, in the plugin's Scope. */
export const compiledIn = (
  definition: Plugin.Any,
  decodeConfig: PluginLoader["decodeConfig"]
): PluginLoader => ({
  kind: "inprocess",
  decodeConfig,
  load: ({ manifest, context }) =>
    Effect.gen(function* () {
      const handlers: HostHandlers = yield* definition.program.pipe(
        Effect.provide(context),
        Effect.catchAllCause((cause) =>
          Cause.isInterruptedOnly(cause)
            ? Effect.interrupt
            : Effect.fail(new PluginFailure({ pluginId: manifest.id, reason: Cause.pretty(cause) }))
        )
      )
      return {
        services: (handlers.services ?? []).map((implementation) => ({
          contract: implementation.contract,
          dispatch: ServiceContract.toDispatch(implementation, manifest.id)
        })),
        health: handlers.health ?? healthy,
        handlers,
        pid: null,
        exit: undefined,
        memoryBytes: () => null
      }
    })
})
