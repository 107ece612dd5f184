/**
 * Development mode: watches each discovered plugin's directory and, when its
 * files change, restarts only that plugin — in-flight calls drain first (up
 * to a timeout), then its subscriptions, hooks and services come back with
 * the new code. The node and the other plugins are untouched.
 */

import * as fs from "node:fs"
import * as Effect from "effect/Effect"
import * as Runtime from "effect/Runtime"
import type { Discovered } from "./PluginDiscovery.js"
import { PluginManager } from "./PluginManager.js"

/** Watch options. */
export interface HotReloadOptions {
  /** Changes closer together than this restart once. Default 300 ms. */
  readonly debounceMillis?: number
  /** How long in-flight calls may take to finish before the restart. Default 5 s. */
  readonly drainMillis?: number
}

/** Watches the plugins' directories until the Scope closes. */
export const watch = (plugins: ReadonlyArray<Discovered>, options: HotReloadOptions = {}) =>
  Effect.gen(function* () {
    const manager = yield* PluginManager
    const runtime = yield* Effect.runtime<never>()
    const run = Runtime.runFork(runtime)
    const debounce = options.debounceMillis ?? 300
    const drainMillis = options.drainMillis ?? 5000
    for (const { directory, manifest } of plugins) {
      let timer: NodeJS.Timeout | undefined
      const reload = () =>
        run(
          Effect.logInfo(`plugin ${manifest.id} changed on disk: reloading`).pipe(
            Effect.zipRight(manager.restart(manifest.id, { drainMillis })),
            Effect.catchAll((error) =>
              Effect.logWarning(`reload of ${manifest.id} failed: ${error.message}`)
            ),
            Effect.annotateLogs({ plugin: manifest.id })
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
