// A Blackhole node for the benchmarks, as it ships: BlackholeNode.layer (SQLite storage, identity
// key, the real bus, hooks, mesh and plugin manager) in a temp data dir, plugins in subprocesses
// with the SubprocessLoader's production defaults (sandbox "permission", 1 s heartbeat, 500 ms
// sampling). Only the log sink differs: Effect logs go to stderr so stdout keeps the table.
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as BlackholeNode from "@blackhole/core/BlackholeNode"
import { PluginManager } from "@blackhole/core/PluginManager"
import * as Principal from "@blackhole/core/Principal"
import { ServiceRegistry } from "@blackhole/core/ServiceRegistry"
import * as SubprocessLoader from "@blackhole/core/SubprocessLoader"
import * as PluginManifest from "@blackhole/sdk/PluginManifest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as ManagedRuntime from "effect/ManagedRuntime"

const here = path.dirname(fileURLToPath(import.meta.url))

/** bench/fixtures/plugins/<name>. */
export const fixturePlugin = (name) => path.join(here, "..", "fixtures", "plugins", name)

/** bench/fixtures/<file>. */
export const fixture = (file) => path.join(here, "..", "fixtures", file)

/** The production log format, written to stderr instead of stdout. */
const stderrLogger = Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.stringLogger))

/** A temp directory removed by `remove()` (best effort, never throws). */
export const tempDir = (prefix) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `blackhole-bench-${prefix}-`))
  return { dir, remove: () => fs.rmSync(dir, { recursive: true, force: true }) }
}

/**
 * Starts a node (the layer a real node runs, `environment: "production"`) in a fresh temp data dir.
 * `config` is merged into the NodeConfig (e.g. `discovery`). `close()` stops every plugin (Stop,
 * SIGTERM, SIGKILL: the loader reaps its processes) and removes the data dir.
 */
export const startNode = async (config = {}) => {
  const data = tempDir("node")
  const layer = Layer.provideMerge(
    BlackholeNode.layer({ dataDir: data.dir, environment: "production", ...config }),
    stderrLogger
  )
  const runtime = ManagedRuntime.make(layer)
  const close = async () => {
    try {
      await runtime.dispose()
    } finally {
      data.remove()
    }
  }
  try {
    await runtime.runPromise(Effect.void)
  } catch (error) {
    await close()
    throw error
  }
  return {
    runtime,
    dataDir: data.dir,
    run: (effect) => runtime.runPromise(effect),
    close
  }
}

/** Reads and decodes `<directory>/plugin.json`, then applies `edit` (a new id, services…). */
export const readManifest = (directory, edit = (manifest) => manifest) =>
  PluginManifest.decodeJson(fs.readFileSync(path.join(directory, "plugin.json"), "utf8"), directory).pipe(
    Effect.map(edit)
  )

/**
 * Registers the plugin in `directory` with the SubprocessLoader (production defaults, data dir
 * `<dataDir>/plugin-data/<id>` as a node gives it) and starts it. Returns its id.
 */
export const startSubprocessPlugin = (node, directory, { id, services, config = {}, loader = {} } = {}) =>
  node.run(
    Effect.gen(function* () {
      const manifest = yield* readManifest(directory, (manifest) => ({
        ...manifest,
        ...(id === undefined ? {} : { id }),
        ...(services === undefined ? {} : { services })
      }))
      const manager = yield* PluginManager
      yield* manager.registerWith(
        manifest,
        SubprocessLoader.make({
          directory,
          manifest,
          dataDirectory: path.join(node.dataDir, "plugin-data", manifest.id),
          ...loader
        }),
        { config }
      )
      yield* manager.start(manifest.id)
      return manifest.id
    })
  )

/** Registers a compiled-in (in-process) plugin definition and starts it. */
export const startInProcessPlugin = (node, definition, config = {}) =>
  node.run(
    Effect.gen(function* () {
      const manager = yield* PluginManager
      yield* manager.register(definition, { config })
      yield* manager.start(String(definition.manifest.id))
    })
  )

/** Stops and unregisters a plugin (its process is gone when this resolves). */
export const removePlugin = (node, id) =>
  node.run(Effect.flatMap(PluginManager, (manager) => manager.unregister(id)))

/** The plugin's info (state, pid, memory) as the manager reports it. */
export const pluginInfo = (node, id) => node.run(Effect.flatMap(PluginManager, (manager) => manager.get(id)))

/** A typed mesh client calling as the operator (as the HTTP API does). */
export const meshClient = (node, contract) =>
  node.run(Effect.map(ServiceRegistry, (registry) => registry.client(Principal.operator, contract)))

/** VmRSS of a process in bytes, from /proc/<pid>/status; null when it is gone. */
export const readRss = (pid) => {
  try {
    const match = /VmRSS:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))
    return match === null ? null : Number(match[1]) * 1024
  } catch {
    return null
  }
}

/** Runs `task(item)` for every item with at most `limit` running at once; results in order. */
export const pool = async (items, limit, task) => {
  const results = new Array(items.length)
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const i = next++
      results[i] = await task(items[i], i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return results
}
