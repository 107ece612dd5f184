/**
 * A plugin's sandbox: the context services its program sees, each a view of
 * a core service that enforces the plugin's grants and quotas. In-process
 * plugins get exactly the same views as subprocess plugins (whose context
 * calls arrive over RPC and land here), so permissions hold either way.
 */
import { PermissionDenied } from "@blackhole/sdk/Errors"
import * as EventPattern from "@blackhole/sdk/EventPattern"
import { Events } from "@blackhole/sdk/Events"
import { builtinAreas, Hooks, isBuiltin } from "@blackhole/sdk/Hooks"
import { NodeInfo } from "@blackhole/sdk/NodeInfo"
import type { ContextServices } from "@blackhole/sdk/Plugin"
import { PluginConfig } from "@blackhole/sdk/PluginConfig"
import { PluginLogger } from "@blackhole/sdk/PluginLogger"
import { PluginStorage } from "@blackhole/sdk/PluginStorage"
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
import { Services } from "@blackhole/sdk/Services"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import { EventBus } from "./EventBus.js"
import { HookRegistry } from "./HookRegistry.js"
import * as Principal from "./Principal.js"
import type { Quota } from "./ResourceLimiter.js"
import { ServiceRegistry } from "./ServiceRegistry.js"
import { Storage } from "./Storage.js"

/** What a sandbox is made from. */
export interface SandboxOptions {
  readonly pluginId: string
  /** The plugin's effective grants (its requests, resolved against the operator's grants). */
  readonly granted: ReadonlyArray<string>
  readonly quota: Quota
  /** The decoded configuration. */
  readonly config: unknown
  readonly nodeInfo: NodeInfo["Type"]
}

/** The storage namespace that is a plugin's own. */
export const namespaceOf = (pluginId: string): string => `plugin/${pluginId}`

/** Builds the context services of one plugin. */
const rank = { debug: 0, info: 1, warn: 2, error: 3 } as const

/** The lowest level of a plugin's own log lines that reaches the node's log, by plugin id (runtime-settable). */
const logLevels = new Map<string, keyof typeof rank>()

/** Sets the lowest level of a plugin's log lines that reach the node's log (debug mode; default all). */
export const setLogLevel = (pluginId: string, level: keyof typeof rank): Effect.Effect<void> =>
  Effect.sync(() => {
    logLevels.set(pluginId, level)
  })

/** The level set for a plugin, if any. */
export const logLevelOf = (pluginId: string): keyof typeof rank => logLevels.get(pluginId) ?? "debug"

export const make = (
  options: SandboxOptions
): Effect.Effect<
  Context.Context<ContextServices>,
  never,
  EventBus | Storage | ServiceRegistry | HookRegistry
> =>
  Effect.gen(function* () {
    const bus = yield* EventBus
    const storage = yield* Storage
    const registry = yield* ServiceRegistry
    const hookRegistry = yield* HookRegistry
    const { pluginId, granted, quota } = options
    const principal = Principal.plugin(pluginId, granted)
    const namespace = namespaceOf(pluginId)

    const require = (permission: string) =>
      Principal.allows(principal, permission)
        ? Effect.void
        : Effect.fail(new PermissionDenied({ permission, principal: pluginId }))

    const logAt = {
      debug: Effect.logDebug,
      info: Effect.logInfo,
      warn: Effect.logWarning,
      error: Effect.logError
    }
    const logger = PluginLogger.of({
      log: (level, message, annotations) =>
        rank[level] < rank[logLevels.get(pluginId) ?? "debug"]
          ? Effect.void
          : logAt[level](message).pipe(Effect.annotateLogs({ ...annotations, plugin: pluginId }))
    })

    const events = Events.of({
      publish: (type, data) =>
        Effect.suspend(() => {
          const invalid = EventPattern.validate(type)
          if (invalid !== undefined || type.includes("*")) {
            return Effect.dieMessage(
              `plugin ${pluginId} published an invalid event type "${type}": ${invalid ?? "wildcards are for patterns"}`
            )
          }
          return require(`events:publish:${type}`).pipe(
            Effect.zipRight(quota.outbound(bus.publish({ type, source: pluginId, data }))),
            Effect.asVoid
          )
        }),
      subscribe: (pattern) =>
        require(`events:subscribe:${pattern}`).pipe(
          Effect.zipRight(
            bus.subscribe(pattern, {
              subscriber: pluginId,
              quota: { reserve: quota.tryReserveMemory, release: quota.releaseMemory }
            })
          ),
          Effect.map((subscription) => subscription.stream)
        )
    })

    const pluginStorage = PluginStorage.of({
      store: (key, value) =>
        require("storage:write").pipe(
          Effect.zipRight(
            quota.outbound(
              // The value is held in the host until the write is acknowledged: it counts against the memory quota.
              Effect.scoped(
                Effect.zipRight(
                  quota.reserveMemory(value.byteLength),
                  storage.store(pluginId, namespace, key, value)
                )
              )
            )
          )
        ),
      retrieve: (key) =>
        require("storage:read").pipe(Effect.zipRight(quota.outbound(storage.retrieve(namespace, key)))),
      delete: (key) =>
        require("storage:write").pipe(
          Effect.zipRight(quota.outbound(storage.delete(pluginId, namespace, key)))
        ),
      list: (prefix) =>
        require("storage:read").pipe(Effect.zipRight(quota.outbound(storage.list(namespace, prefix ?? ""))))
    })

    const call = (service: string, method: string, payload: unknown) =>
      quota.outbound(registry.call(principal, service, method, payload))
    const services = Services.of({
      client: (contract) =>
        ServiceContract.makeClient(contract, (method, payload) => call(contract.name, method, payload)),
      call
    })

    const hooks = Hooks.of({
      run: (name, payload) =>
        isBuiltin(name)
          ? Effect.dieMessage(
              `plugin ${pluginId} tried to run ${name}: hooks of the areas ${builtinAreas.join(", ")} are run by the node itself; a plugin runs only its own custom hooks`
            )
          : require(`hooks:run:${name}`).pipe(Effect.zipRight(hookRegistry.run(name, payload))),
      register: (name, handler, hookOptions) =>
        require(`hooks:register:${name}`).pipe(
          Effect.zipRight(
            hookRegistry.register(
              name,
              pluginId,
              handler as (payload: unknown) => Effect.Effect<void, unknown>,
              hookOptions
            )
          )
        )
    })

    return Context.make(PluginLogger, logger).pipe(
      Context.add(PluginConfig, options.config),
      Context.add(Events, events),
      Context.add(PluginStorage, pluginStorage),
      Context.add(Services, services),
      Context.add(Hooks, hooks),
      Context.add(NodeInfo, options.nodeInfo)
    )
  })
