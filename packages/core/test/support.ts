/** Helpers shared by the core tests that run plugins in real subprocesses. */

import * as fs from "node:fs"
import * as path from "node:path"
import * as PluginManifest from "@blackhole/sdk/PluginManifest"
import * as Effect from "effect/Effect"
import * as HashMap from "effect/HashMap"
import type * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import type { RegisterOptions } from "../src/PluginManager.js"
import { PluginManager } from "../src/PluginManager.js"
import * as SubprocessLoader from "../src/SubprocessLoader.js"

/** The state letter of a process in /proc (R, S, Z…), or null when there is no such process. */
export const procState = (pid: number): string | null => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    // "pid (comm) S ..." — comm may itself contain spaces and parentheses.
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3)
  } catch {
    return null
  }
}

/** Gone: no such process, or a zombie awaiting its reaper. */
export const isGone = (pid: number): boolean => {
  const state = procState(pid)
  return state === null || state === "Z"
}

/** Registers the plugin in `directory` (its plugin.json) to run as a subprocess; returns its manifest. */
export const registerSubprocess = (
  directory: string,
  loader: Partial<Omit<SubprocessLoader.SubprocessOptions, "directory" | "manifest">> = {},
  options: RegisterOptions = {}
) =>
  Effect.gen(function* () {
    const manifest = yield* PluginManifest.decodeJson(
      fs.readFileSync(path.join(directory, "plugin.json"), "utf8"),
      directory
    )
    const manager = yield* PluginManager
    yield* manager.registerWith(manifest, SubprocessLoader.make({ ...loader, directory, manifest }), options)
    return manifest
  })

/** One line the node logged, as a test reads it. */
export interface LogLine {
  readonly level: string
  readonly message: string
  readonly annotations: Readonly<Record<string, unknown>>
}

/** Replaces the default logger with one that appends every line to `lines`. */
export const captureLogs = (lines: Array<LogLine>): Layer.Layer<never> =>
  Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ logLevel, message, annotations }) => {
      const parts = Array.isArray(message) ? message : [message]
      lines.push({
        level: logLevel.label,
        message: parts.map(String).join(" "),
        annotations: Object.fromEntries(HashMap.toEntries(annotations))
      })
    })
  )
