/**
 * A Blackhole node as one Layer: identity, storage, events, hooks, the mesh,
 * resource limits and the plugin manager, with the core services on the mesh
 * and the configured plugins started in dependency order. Any piece can be
 * swapped: `layerWith` leaves identity and the storage backend to the caller.
 */

import * as nodePath from "node:path"
import type { StorageError } from "@blackhole/sdk/Errors"
import type { Environment } from "@blackhole/sdk/NodeInfo"
import type * as Plugin from "@blackhole/sdk/Plugin"
import type { PluginManifest } from "@blackhole/sdk/PluginManifest"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as CoreMesh from "./CoreMesh.js"
import * as EventBus from "./EventBus.js"
import * as HookRegistry from "./HookRegistry.js"
import * as HotReload from "./HotReload.js"
import * as Identity from "./Identity.js"
import * as P2P from "./P2P.js"
import * as P2PMesh from "./P2PMesh.js"
import * as PluginDiscovery from "./PluginDiscovery.js"
import * as PluginManager from "./PluginManager.js"
import * as PluginRoutes from "./PluginRoutes.js"
import * as ResourceLimiter from "./ResourceLimiter.js"
import * as ServiceRegistry from "./ServiceRegistry.js"
import * as Storage from "./Storage.js"
import * as StorageBackend from "./StorageBackend.js"
import * as StorageRouting from "./StorageRouting.js"
import * as SubprocessLoader from "./SubprocessLoader.js"

/** This node's version (compared with plugin manifests' `compatibility`). */
export const version = "0.1.0"

/** A compiled-in plugin, optionally with its configuration. */
export type CompiledPlugin = Plugin.Any | { readonly definition: Plugin.Any; readonly config?: unknown }

/** Everything a node is configured with; every field has a sane default. */
export interface NodeConfig {
  /** Where identity.key and node.db live. Default `.blackhole`. */
  readonly dataDir?: string
  /** Reported to plugins; default `production` when NODE_ENV says so, else `development`. */
  readonly environment?: Environment
  /** The node version plugins are checked against. Default: this package's version. */
  readonly version?: string
  /** Compiled-in plugins, started in dependency order. */
  readonly plugins?: ReadonlyArray<CompiledPlugin>
  /** The operator's grants of sensitive permissions, by plugin id. */
  readonly grants?: Readonly<Record<string, ReadonlyArray<string>>>
  /** Raw configuration by plugin id (used when a CompiledPlugin carries none). */
  readonly pluginConfig?: Readonly<Record<string, unknown>>
  /** Plugins registered but not started with the node (an operator starts them by hand). */
  readonly disabled?: ReadonlyArray<string>
  /** How many plugins start at once, each after its dependencies. Default 8. */
  readonly startConcurrency?: number
  /** Directories searched for plugins (`plugin.json`); each found plugin runs in its own subprocess. */
  readonly discovery?: { readonly directories: ReadonlyArray<string> }
  /** Development mode: restart a discovered plugin when its files change. */
  readonly development?: { readonly hotReload?: boolean }
  /** Restart policy of supervised plugins, and per-plugin overrides by id. */
  readonly restart?: PluginManager.RestartPolicy
  readonly pluginRestart?: Readonly<Record<string, PluginManager.RestartPolicy>>
  /** How plugin processes are run (heartbeat, grace, frame cap…). */
  readonly subprocess?: Omit<SubprocessLoader.SubprocessOptions, "directory" | "manifest" | "dataDirectory">
  readonly events?: { readonly capacity?: number; readonly overflow?: EventBus.OverflowPolicy }
  readonly hooks?: { readonly defaultTimeoutMillis?: number; readonly failOpen?: boolean }
  readonly mesh?: ServiceRegistry.Options
  /** Namespaces kept by a storage plugin instead of the node's backend: namespace → plugin id. */
  readonly storage?: { readonly namespaces?: StorageRouting.Routes }
  /** Peer-to-peer networking (libp2p); absent means no P2P. Protocol plugins need it. */
  readonly p2p?: P2P.Config
}

/** The services a node provides. */
export type NodeServices =
  | Identity.Identity
  | Storage.Storage
  | StorageBackend.StorageBackend
  | EventBus.EventBus
  | HookRegistry.HookRegistry
  | ServiceRegistry.ServiceRegistry
  | ResourceLimiter.ResourceLimiter
  | PluginManager.PluginManager
  | PluginRoutes.PluginRoutes
  | StorageRouting.StorageRouting

const environmentOf = (config: NodeConfig): Environment =>
  config.environment ?? (process.env.NODE_ENV === "production" ? "production" : "development")

/**
 * Registers the configured plugins and the core mesh services, then starts the
 * plugins. Separate from the services so an application can put something
 * between them (the admin API answers "starting" while plugins start).
 */
export const launch = (config: NodeConfig) =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      const manager = yield* PluginManager.PluginManager
      const disabled = new Set(config.disabled ?? [])
      yield* CoreMesh.register({ version: config.version ?? version, environment: environmentOf(config) })
      for (const plugin of config.plugins ?? []) {
        const definition = "definition" in plugin ? plugin.definition : plugin
        const id = String(definition.manifest.id)
        const pluginConfig =
          "definition" in plugin && plugin.config !== undefined ? plugin.config : config.pluginConfig?.[id]
        // A bad manifest fails that plugin's registration, never the node.
        yield* manager
          .register(definition, { config: pluginConfig, autoStart: !disabled.has(id) })
          .pipe(Effect.catchAll((error) => Effect.logError(`plugin ${id} not registered: ${error.message}`)))
      }
      const dataDir = dataDirOf(config)
      const discovery = yield* PluginDiscovery.discover(config.discovery?.directories ?? [], {
        exclude: [dataDir]
      })
      for (const problem of discovery.problems) {
        yield* Effect.logError(`plugin in ${problem.directory} not loaded: ${problem.error.message}`)
      }
      // A discovered plugin runs in its own process; hot reload registers it again this way when its
      // manifest changed.
      const registerDiscovered = (directory: string, manifest: PluginManifest) => {
        const restart = config.pluginRestart?.[manifest.id]
        return manager.registerWith(
          manifest,
          SubprocessLoader.make({
            ...config.subprocess,
            directory,
            manifest,
            dataDirectory: PluginManager.pluginDataDirectory(dataDir, manifest.id)
          }),
          {
            config: config.pluginConfig?.[manifest.id],
            autoStart: !disabled.has(manifest.id),
            ...(restart === undefined ? {} : { restart })
          }
        )
      }
      for (const { directory, manifest } of discovery.plugins) {
        yield* registerDiscovered(directory, manifest).pipe(
          Effect.catchAll((error) =>
            Effect.logError(`plugin ${manifest.id} not registered: ${error.message}`)
          )
        )
      }
      // Storage plugins that keep a namespace start first: other plugins may write there as they start.
      for (const id of new Set(Object.values(config.storage?.namespaces ?? {}))) {
        if (disabled.has(id)) continue
        yield* manager
          .start(id)
          .pipe(
            Effect.catchAll((error) =>
              Effect.logError(`storage plugin ${id} did not start: ${error.message}`)
            )
          )
      }
      yield* manager.startAll
      if (config.development?.hotReload === true) {
        yield* HotReload.watch(discovery.plugins, { register: registerDiscovered })
      }
    })
  )

/** A node over the given Identity and StorageBackend. */
export const layerWith = (
  config: NodeConfig = {}
): Layer.Layer<
  Exclude<NodeServices, Identity.Identity | StorageBackend.StorageBackend>,
  P2P.P2PError | StorageError,
  Identity.Identity | StorageBackend.StorageBackend
> => launch(config).pipe(Layer.provideMerge(servicesWith(config)))

/** The node's services over the given Identity and StorageBackend, with no plugin started yet. */
export const servicesWith = (
  config: NodeConfig = {}
): Layer.Layer<
  Exclude<NodeServices, Identity.Identity | StorageBackend.StorageBackend>,
  P2P.P2PError | StorageError,
  Identity.Identity | StorageBackend.StorageBackend
> => {
  const base = Layer.mergeAll(
    HookRegistry.layer(config.hooks),
    EventBus.layer(config.events),
    ResourceLimiter.layer
  )
  const manager = Layer.unwrapScoped(
    Effect.gen(function* () {
      const identity = yield* Identity.Identity
      const routes = yield* PluginRoutes.PluginRoutes
      const routing = yield* StorageRouting.StorageRouting
      const attachments: Array<PluginManager.Attachment> = [
        PluginRoutes.attachment(routes),
        StorageRouting.attachment(routing)
      ]
      const p2p = yield* Effect.serviceOption(P2P.P2P)
      if (Option.isSome(p2p)) {
        const mesh = P2PMesh.make(p2p.value, yield* HookRegistry.HookRegistry)
        attachments.push(mesh.attachment)
        yield* mesh.serve(yield* ServiceRegistry.ServiceRegistry)
      }
      return PluginManager.layer({
        nodeInfo: {
          nodeId: identity.nodeId,
          version: config.version ?? version,
          environment: environmentOf(config)
        },
        ...(config.grants === undefined ? {} : { grants: config.grants }),
        ...(config.restart === undefined ? {} : { restart: config.restart }),
        ...(config.startConcurrency === undefined ? {} : { startConcurrency: config.startConcurrency }),
        ...(config.dataDir === undefined ? {} : { dataDir: nodePath.resolve(config.dataDir) }),
        attachments
      })
    })
  )
  // P2P only when configured: its layer owns a libp2p node (listening sockets) for the node's lifetime.
  const p2p = config.p2p === undefined ? Layer.empty : P2P.layer(config.p2p)
  const services = manager.pipe(
    Layer.provideMerge(PluginRoutes.layer),
    Layer.provideMerge(ServiceRegistry.layer(config.mesh)),
    // Namespaces routed to storage plugins reach them through the Storage service; the rest the base.
    Layer.provideMerge(
      Storage.layer.pipe(Layer.provide(StorageRouting.layerBackend(config.storage?.namespaces ?? {})))
    ),
    Layer.provideMerge(StorageRouting.layer),
    Layer.provideMerge(p2p),
    Layer.provideMerge(base)
  )
  return services
}

/** Where the node keeps its data. */
export const dataDirOf = (config: NodeConfig): string => nodePath.resolve(config.dataDir ?? ".blackhole")

/** A node with its identity key and SQLite storage in `dataDir`. */
export const layer = (config: NodeConfig = {}) => {
  const dataDir = dataDirOf(config)
  return layerWith({ ...config, dataDir }).pipe(
    Layer.provideMerge(
      Layer.mergeAll(
        Identity.layer({ dataDir }),
        StorageBackend.layerSqlite({ filename: nodePath.join(dataDir, "node.db") })
      )
    ),
    Layer.provide(NodeFileSystem.layer)
  )
}
