/**
 * Development mode: watches each discovered plugin's directory and, when its
 * files change, restarts only that plugin — in-flight calls drain first (up
 * to a timeout), then its subscriptions, hooks and services come back with
 * the new code. A changed plugin.json registers it again with the new
 * manifest (permissions, resources, services); an invalid one is reported and
 * the running plugin is left alone. The node and the other plugins are untouched.
 */

import * as fs from "node:fs"
import * as path from "node:path"
import type { DependencyError } from "@blackhole/sdk/Errors"
import * as PluginManifest from "@blackhole/sdk/PluginManifest"
import * as Effect from "effect/Effect"
import * as Runtime from "effect/Runtime"
import * as ConfigSchemaFile from "./ConfigSchemaFile.js"
import type { Discovered } from "./PluginDiscovery.js"
import { PluginManager } from "./PluginManager.js"

/** Watch options. */
export interface HotReloadOptions {
  /** Changes closer together than this restart once. Default 300 ms. */
  readonly debounceMillis?: number
  /** How long in-flight calls may take to finish before the restart. Default 5 s. */
  readonly drainMillis?: number
  /**
   * Registers the plugin again when its plugin.json changed (the node passes the way it registers
   * discovered plugins). Without it a changed manifest only restarts the plugin.
   */
  readonly register?: (
    directory: string,
    manifest: PluginManifest.PluginManifest
  ) => Effect.Effect<void, DependencyError>
}

/** Watches the plugins' directories until the Scope closes. */
export const watch = (plugins: ReadonlyArray<Discovered>, options: HotReloadOptions = {}) =>
  Effect.gen(function* () {
    const manager = yield* PluginManager
    const runtime = yield* Effect.runtime<never>()
    const run = Runtime.runFork(runtime)
    const debounce = options.debounceMillis ?? 300
    const drainMillis = options.drainMillis ?? 5000
    for (const discovered of plugins) {
      const { directory } = discovered
      let current = discovered.manifest
      let timer: NodeJS.Timeout | undefined
      const reloadOnce = Effect.gen(function* () {
        const id = current.id
        ConfigSchemaFile.invalidate(directory)
        const file = path.join(directory, "plugin.json")
        const next = yield* Effect.either(
          Effect.flatMap(
            Effect.try({ try: () => fs.readFileSync(file, "utf8"), catch: (error) => error }),
            (text) => PluginManifest.decodeJson(text, file)
          )
        )
        if (next._tag === "Left") {
          const reason = next.left instanceof Error ? next.left.message : String(next.left)
          return yield* Effect.logWarning(`plugin ${id} not reloaded, the running one stays: ${reason}`)
        }
        if (next.right.id !== id) {
          return yield* Effect.logWarning(
            `plugin ${id} now says its id is ${next.right.id}: restart the node to load it under the new id`
          )
        }
        const changed = JSON.stringify(next.right) !== JSON.stringify(current)
        if (!changed || options.register === undefined) {
          yield* Effect.logInfo(`plugin ${id} changed on disk: reloading`)
          return yield* manager.restart(id, { drainMillis })
        }
        yield* Effect.logInfo(`plugin ${id}'s manifest changed: registering it again`)
        yield* manager.unregister(id)
        yield* options.register(directory, next.right)
        current = next.right
        yield* manager.start(id)
      })
      const reload = () =>
        run(
          reloadOnce.pipe(
            Effect.catchAll((error) => Effect.logWarning(`reload of ${current.id} failed: ${error.message}`)),
            Effect.annotateLogs({ plugin: current.id })
          )
        )
      yield* Effect.acquireRelease(
        Effect.sync(() =>
          fs.watch(directory, { recursive: true }, (_event, file) => {
            // Editors' swap files and the plugin's own node_modules do not count as changes.
            if (file !== null && (file.includes("node_modules") || /(^|\/)\.|~$|\.swp$/.test(file))) return
            clearTimeout(timer)
            timer = setTimeout(reload, debounce)
          })
        ),
        (watcher) =>
          Effect.sync(() => {
            clearTimeout(timer)
            watcher.close()
          })
      )
    }
  })
