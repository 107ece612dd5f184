/**
 * CPU profiles of a subprocess plugin on demand. The permission model denies
 * the inspector inside a sandboxed plugin and V8's `--cpu-prof` writes nothing
 * under it, while `--prof` works: so a profile restarts the plugin under
 * `--prof` for the requested time, restarts it again without, and turns the
 * V8 log into a readable report with `node --prof-process`.
 */
import * as childProcess from "node:child_process"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { PluginManager } from "./PluginManager.js"

/** Why a profile could not be taken. */
export class ProfileError extends Data.TaggedError("ProfileError")<{ readonly reason: string }> {
  override get message() {
    return this.reason
  }
}

/** The V8 log a plugin process writes while profiled, in its own (writable) data directory. */
const logFileIn = (dataDirectory: string) => nodePath.join(dataDirectory, "profile.v8.log")

/** Plugins to be started under `--prof`, by id. */
const requested = new Set<string>()

/** The extra node flags for the next start of a plugin (empty unless a profile was requested). */
export const flagsFor = (pluginId: string, dataDirectory: string | undefined): ReadonlyArray<string> =>
  requested.has(pluginId) && dataDirectory !== undefined
    ? ["--prof", `--logfile=${logFileIn(dataDirectory)}`, "--no-logfile-per-isolate"]
    : []

/**
 * Profiles a running subprocess plugin for `seconds`; writes the processed
 * report to `<profilesDir>/<id>-<time>.txt` and returns its path. The plugin
 * is restarted twice (into and out of profiling).
 */
export const profile = (options: {
  readonly manager: PluginManager["Type"]
  readonly pluginId: string
  readonly seconds: number
  readonly dataDirectory: string
  readonly profilesDir: string
}): Effect.Effect<string, ProfileError> =>
  Effect.gen(function* () {
    const { manager, pluginId } = options
    const info = yield* manager
      .get(pluginId)
      .pipe(Effect.mapError(() => new ProfileError({ reason: `no plugin "${pluginId}" is installed` })))
    if (info.loader !== "subprocess") {
      return yield* new ProfileError({
        reason: `${pluginId} runs inside the node's process; profile the node itself (node --cpu-prof)`
      })
    }
    if (info.state !== "running") {
      return yield* new ProfileError({ reason: `${pluginId} is ${info.state}; start it first` })
    }
    if (requested.has(pluginId)) {
      return yield* new ProfileError({ reason: `${pluginId} is already being profiled` })
    }
    const log = logFileIn(options.dataDirectory)
    yield* Effect.sync(() => fs.rmSync(log, { force: true }))
    const restart = (why: string) =>
      manager
        .restart(pluginId, { drainMillis: 1000 })
        .pipe(Effect.mapError((error) => new ProfileError({ reason: `${why}: ${error.message}` })))
    const back = () => Effect.sync(() => requested.delete(pluginId)).pipe(Effect.zipRight(restart("restart")))
    // Not a finalizer: a restart must stay interruptible (its start has deadlines). If this request
    // is interrupted, the way back to normal runs on in the background.
    requested.add(pluginId)
    const profiled = yield* restart("could not restart it under --prof").pipe(
      Effect.zipRight(Effect.sleep(Duration.seconds(options.seconds))),
      Effect.onInterrupt(() => Effect.asVoid(Effect.forkDaemon(Effect.ignore(back())))),
      Effect.exit
    )
    const restored = yield* Effect.exit(back())
    if (profiled._tag === "Failure") return yield* Effect.failCause(profiled.cause)
    if (restored._tag === "Failure") return yield* Effect.failCause(restored.cause)
    if (!fs.existsSync(log)) {
      return yield* new ProfileError({ reason: `the plugin process wrote no V8 log at ${log}` })
    }
    fs.mkdirSync(options.profilesDir, { recursive: true, mode: 0o700 })
    const stamp = new Date().toISOString().replace(/[:.]/g, "-")
    const report = nodePath.join(options.profilesDir, `${pluginId}-${stamp}.txt`)
    yield* Effect.async<void, ProfileError>((resume) => {
      const child = childProcess.execFile(
        process.execPath,
        ["--prof-process", log],
        { maxBuffer: 64 * 1024 * 1024 },
        (error, stdout, stderr) => {
          if (error !== null) {
            resume(
              Effect.fail(new ProfileError({ reason: `--prof-process failed: ${stderr || error.message}` }))
            )
            return
          }
          fs.writeFileSync(report, stdout, { mode: 0o600 })
          resume(Effect.void)
        }
      )
      return Effect.sync(() => child.kill("SIGKILL"))
    })
    // Keep the raw log beside the report (it can be processed again with other options).
    yield* Effect.sync(() => fs.renameSync(log, report.replace(/\.txt$/, ".v8.log")))
    return report
  })
