/** Helpers shared by the core tests that run plugins in real subprocesses. */

import * as fs from "node:fs"
import * as path from "node:path"
import * as PluginManifest from "@blackhole/sdk/PluginManifest"
import * as Effect from "effect/Effect"
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
