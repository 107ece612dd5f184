/**
 * Discovery: walks the configured directories for `plugin.json` (the
 * original design's DiscoverPlugins), validates each manifest and reports a
 * bad plugin with its reason while the others still load. It never descends
 * into the node's data directory, `node_modules`, hidden directories, or
 * below a plugin's own directory.
 */

import * as fs from "node:fs/promises"
import * as path from "node:path"
import { InvalidManifest, Issue } from "@blackhole/sdk/Errors"
import * as PluginManifest from "@blackhole/sdk/PluginManifest"
import * as Effect from "effect/Effect"

/** A plugin found on disk. */
export interface Discovered {
  readonly directory: string
  readonly manifest: PluginManifest.PluginManifest
}

/** A directory that looked like a plugin but cannot be loaded, and why. */
export interface Problem {
  readonly directory: string
  readonly error: InvalidManifest
}

/** What a walk found. */
export interface Discovery {
  readonly plugins: ReadonlyArray<Discovered>
  readonly problems: ReadonlyArray<Problem>
}

/** Walk options. */
export interface DiscoverOptions {
  /** Directories never entered (the node's data directory, typically). */
  readonly exclude?: ReadonlyArray<string>
  /** How deep below each root to look. Default 4. */
  readonly maxDepth?: number
}

const isInside = (child: string, parent: string) => {
  const relative = path.relative(parent, child)
  return relative === "" || (!relative.startsWith("..") && !path.isAbsolute(relative))
}

const readDirectory = (directory: string) =>
  Effect.promise(() => fs.readdir(directory, { withFileTypes: true }).catch(() => []))

/** Finds and validates every plugin below `roots`; duplicate ids are problems, first found wins. */
export const discover = (
  roots: ReadonlyArray<string>,
  options: DiscoverOptions = {}
): Effect.Effect<Discovery> =>
  Effect.gen(function* () {
    const exclude = (options.exclude ?? []).map((dir) => path.resolve(dir))
    const maxDepth = options.maxDepth ?? 4
    const plugins: Array<Discovered> = []
    const problems: Array<Problem> = []
    const seen = new Map<string, string>()

    const load = (directory: string) =>
      Effect.gen(function* () {
        const file = path.join(directory, "plugin.json")
        const result = yield* Effect.promise(() => fs.readFile(file, "utf8")).pipe(
          Effect.flatMap((text) => PluginManifest.decodeJson(text, file)),
          Effect.either
        )
        if (result._tag === "Left") {
          problems.push({ directory, error: result.left })
          return
        }
        const manifest = result.right
        const first = seen.get(manifest.id)
        if (first !== undefined) {
          problems.push({
            directory,
            error: new InvalidManifest({
              source: file,
              issues: [new Issue({ path: "id", message: `"${manifest.id}" is already provided by ${first}` })]
            })
          })
          return
        }
        seen.set(manifest.id, directory)
        plugins.push({ directory, manifest })
      })

    const visit = (directory: string, depth: number): Effect.Effect<void> =>
      Effect.gen(function* () {
        if (exclude.some((excluded) => isInside(directory, excluded))) return
        const entries = yield* readDirectory(directory)
        // A plugin's own directory is not searched further (its node_modules, its build output).
        if (entries.some((entry) => entry.isFile() && entry.name === "plugin.json"))
          return yield* load(directory)
        if (depth >= maxDepth) return
        const children = entries
          .filter(
            (entry) => entry.isDirectory() && !entry.name.startsWith(".") && entry.name !== "node_modules"
          )
          .map((entry) => entry.name)
          .sort()
        for (const child of children) yield* visit(path.join(directory, child), depth + 1)
      })

    for (const root of roots) yield* visit(path.resolve(root), 0)
    return { plugins, problems }
  })
