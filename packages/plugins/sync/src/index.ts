/**
 * The sync plugin: keeps one storage namespace identical on every peer that runs it, over the P2P
 * protocol `/blackhole/sync/1.0.0`. Records are versioned with a hybrid logical clock and the
 * writer's node id; conflicting writes resolve by last-writer-wins on that version, the same way on
 * every node. Local writes are noticed through the storage hooks (and, at start, by comparing the
 * namespace with the versions kept in the plugin's own storage), pushed to connected peers at once,
 * and repaired by digest exchanges when a peer connects and every anti-entropy interval.
 */
import * as CoreServices from "@blackhole/sdk/CoreServices"
import * as Events from "@blackhole/sdk/Events"
import * as Hooks from "@blackhole/sdk/Hooks"
import { NodeInfo } from "@blackhole/sdk/NodeInfo"
import * as Plugin from "@blackhole/sdk/Plugin"
import * as PluginConfig from "@blackhole/sdk/PluginConfig"
import { PluginLogger } from "@blackhole/sdk/PluginLogger"
import { PluginStorage } from "@blackhole/sdk/PluginStorage"
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
import * as Services from "@blackhole/sdk/Services"
import * as Effect from "effect/Effect"
import { Config as ConfigStruct, pluginId, protocol, Sync } from "./contract.js"
import * as Replica from "./internal/replica.js"

/** The plugin's config (see `Config` in the contract for every field and its default). */
export const Config = PluginConfig.make(ConfigStruct)

/** The manifest; plugin.json holds the same (a test keeps the two equal). */
export const manifest = {
  id: pluginId,
  name: "Sync",
  version: "0.1.0",
  type: "protocol",
  author: "Blackhole",
  description:
    "Keeps a storage namespace identical on every peer: hybrid-logical-clock versions, last-writer-wins, catch-up by digests",
  license: "MIT",
  main: "dist/index.js",
  bundle: "dist/plugin.bundle.cjs",
  configuration: { $schema: "config.schema.json" },
  permissions: [
    "p2p:protocol:sync",
    "service:p2p:send",
    "service:storage:read",
    "service:storage:write",
    "hooks:register:storage.after.write",
    "hooks:register:storage.after.delete",
    "events:publish:sync.*",
    "storage:read",
    "storage:write"
  ],
  services: ["sync"]
} as const

export default Plugin.protocol({
  manifest,
  config: Config,
  program: Effect.gen(function* () {
    const config = yield* Config
    // Handlers have no requirements: take what they use from the context once.
    const logger = yield* PluginLogger
    const events = yield* Events.Events
    const hooks = yield* Hooks.Hooks
    const metadata = yield* PluginStorage
    const { nodeId } = yield* NodeInfo
    const storage = yield* Services.client(CoreServices.Storage)
    const p2p = yield* Services.client(CoreServices.P2P)

    const replica = yield* Replica.make({
      nodeId,
      config,
      storage,
      p2p,
      metadata,
      log: (level, message, annotations) => logger.log(level, message, annotations),
      publish: (type, data) =>
        events
          .publish(type, data)
          .pipe(
            Effect.catchAll((error) => logger.log("warn", `could not publish ${type}: ${error.message}`))
          ),
      watch: (notice) =>
        Effect.gen(function* () {
          // Writes this plugin makes are the ones it applies from peers: not local changes.
          const onChange = (change: {
            readonly namespace: string
            readonly key: string
            readonly principal: string
          }) =>
            Effect.sync(() => {
              if (change.namespace === config.namespace && change.principal !== pluginId) notice(change.key)
            })
          yield* hooks.register("storage.after.write", onChange)
          yield* hooks.register("storage.after.delete", onChange)
        }).pipe(Effect.orDie)
    })

    return {
      protocol: {
        name: protocol.name,
        version: protocol.version,
        handleMessage: replica.handleMessage,
        onPeerConnected: replica.peerConnected,
        onPeerDisconnected: replica.peerDisconnected
      },
      services: [
        ServiceContract.implement(Sync, {
          status: () => replica.status,
          inspect: ({ key }) => replica.inspect(key),
          syncNow: (payload) => Effect.map(replica.syncNow(payload?.peer), (peers) => ({ peers }))
        })
      ],
      health: Effect.map(replica.status, (status) => ({
        status: "healthy" as const,
        details: `${status.records} records in ${JSON.stringify(status.namespace)}, ${status.peers.filter((peer) => peer.connected).length} peers connected`
      }))
    }
  })
})
