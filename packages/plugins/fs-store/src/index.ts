/**
 * The fs-store plugin: a storage backend that keeps values as content-addressed
 * files (identical values stored once) with a crash-safe key index, under its
 * data directory or a configured one, with an optional byte quota.
 */
import { PluginFailure } from "@blackhole/sdk/Errors"
import { NodeInfo } from "@blackhole/sdk/NodeInfo"
import * as Plugin from "@blackhole/sdk/Plugin"
import * as PluginConfig from "@blackhole/sdk/PluginConfig"
import { PluginLogger } from "@blackhole/sdk/PluginLogger"
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
import * as Effect from "effect/Effect"
import { Config as ConfigStruct, type Config as ConfigType, FsStore } from "./contract.js"
import * as ObjectStore from "./internal/objectStore.js"

/** The plugin's config (see `Config` in the contract for every field and its default). */
export const Config = PluginConfig.make(ConfigStruct)

/** The manifest; plugin.json holds the same. */
export const manifest = {
  id: "dev.blackhole.fs-store",
  name: "File system store",
  version: "0.1.0",
  type: "storage",
  description: "A storage backend of content-addressed files: identical values stored once, crash-safe index",
  license: "MIT",
  main: "dist/index.js",
  bundle: "dist/plugin.bundle.cjs",
  configuration: { $schema: "config.schema.json" },
  permissions: [],
  services: ["fs-store"]
} as const

const resolveDirectory = (config: ConfigType) =>
  Effect.gen(function* () {
    if (config.directory !== undefined) return config.directory
    const { dataDirectory } = yield* NodeInfo
    if (dataDirectory !== undefined) return dataDirectory
    return yield* new PluginFailure({
      pluginId: manifest.id,
      reason: `no directory: set "directory" (an absolute path) in this plugin's config; this node gives its plugins no data directory (NodeInfo.dataDirectory)`
    })
  })

export default Plugin.storage({
  manifest,
  config: Config,
  program: Effect.gen(function* () {
    const config = yield* Config
    const logger = yield* PluginLogger
    const directory = yield* resolveDirectory(config)
    const { store, removed } = yield* ObjectStore.open({ directory, maxBytes: config.maxBytes }).pipe(
      Effect.mapError(
        (error) =>
          new PluginFailure({
            pluginId: manifest.id,
            reason: `cannot open the store: ${error.reason}. A plugin process may write only to its data directory: for any other directory add "fs:write:${directory}" to "permissions" in plugin.json and grant it under plugins.grants."${manifest.id}" in the node config`
          })
      )
    )
    const opened = yield* store.stats
    yield* logger.log("info", `storing in ${directory}: ${opened.keys} keys, ${opened.usedBytes} bytes`, {
      maxBytes: config.maxBytes ?? null,
      ...(removed > 0 ? { removedLeftovers: removed } : {})
    })
    const damaged = yield* store.damage
    if (damaged.length > 0) {
      yield* logger.log("error", `the store under ${directory} is damaged: ${damaged.join("; ")}`)
    }

    return {
      storage: {
        store: store.store,
        retrieve: store.retrieve,
        delete: store.delete,
        list: store.list,
        capacity: store.capacity
      },
      services: [ServiceContract.implement(FsStore, { stats: () => store.stats, check: () => store.check })],
      health: Effect.gen(function* () {
        const problems = yield* store.damage
        const stats = yield* store.stats
        const usage = `${stats.keys} keys, ${stats.usedBytes}${stats.totalBytes === null ? "" : ` of ${stats.totalBytes}`} bytes`
        return problems.length > 0
          ? {
              status: "degraded" as const,
              details: `${problems.length} problems (run fs-store.check); ${usage}`
            }
          : { status: "healthy" as const, details: usage }
      })
    }
  })
})
