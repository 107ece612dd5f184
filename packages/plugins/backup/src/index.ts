/**
 * The backup plugin: scheduled, checksummed snapshots of the node's storage,
 * read through the core `storage` service on the mesh, with retention,
 * verification and restore. A failed backup is logged at error, published as
 * `backup.failed` and shown as degraded until a backup succeeds again.
 */
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import * as CoreServices from "@blackhole/sdk/CoreServices"
import * as Events from "@blackhole/sdk/Events"
import { NodeInfo } from "@blackhole/sdk/NodeInfo"
import * as Plugin from "@blackhole/sdk/Plugin"
import * as PluginConfig from "@blackhole/sdk/PluginConfig"
import { PluginLogger } from "@blackhole/sdk/PluginLogger"
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
import * as Services from "@blackhole/sdk/Services"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Cron from "effect/Cron"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import {
  Backup,
  BackupError,
  Config as ConfigStruct,
  type Config as ConfigType,
  type SnapshotInfo,
  type Status
} from "./contract.js"
import * as SnapshotFile from "./internal/snapshotFile.js"

/** The plugin's config (see `Config` in the contract for every field and its default). */
export const Config = PluginConfig.make(ConfigStruct)

/** The manifest; plugin.json holds the same, plus `main` and `configuration`. */
export const manifest = {
  id: "dev.blackhole.backup",
  name: "Backup",
  version: "0.1.0",
  type: "service",
  description: "Scheduled, checksummed snapshots of the node's storage, with retention, verify and restore",
  license: "MIT",
  main: "dist/index.js",
  bundle: "dist/plugin.bundle.cjs",
  configuration: { $schema: "config.schema.json" },
  permissions: [
    "service:storage:read",
    "service:storage:write",
    "events:publish:backup.completed",
    "events:publish:backup.failed"
  ],
  services: ["backup"]
} as const

/** The encoded size of one restored batch stays under this, well inside the channel's frame cap. */
const restoreBatchBytes = 1 << 20

const messageOf = (error: unknown): string =>
  error instanceof Error ? error.message : typeof error === "string" ? error : JSON.stringify(error)

/** A cause in one line: the typed error's message, or the defect's. */
const reasonOf = (cause: Cause.Cause<unknown>): string =>
  Option.match(Cause.failureOption(cause), {
    onSome: messageOf,
    onNone: () => messageOf(Cause.squash(cause))
  })

const describeSchedule = (schedule: ConfigType["schedule"]): string =>
  typeof schedule === "number" ? `every ${schedule} ms` : `cron "${schedule}"`

const scheduleOf = (schedule: ConfigType["schedule"]): Schedule.Schedule<unknown> =>
  typeof schedule === "number"
    ? Schedule.spaced(Duration.millis(schedule))
    : // The config was decoded with CronExpression, so this parses.
      Schedule.cron(Either.getOrThrow(Cron.parse(schedule)))

/** The configured directory, else the plugin's own data directory from the node. */
const resolveDirectory = (config: ConfigType) =>
  Effect.gen(function* () {
    if (config.directory !== undefined) return config.directory
    const { dataDirectory } = yield* NodeInfo
    if (dataDirectory !== undefined) return dataDirectory
    return yield* new BackupError({
      reason: "io",
      detail: `no backup directory: set "directory" (an absolute path) in this plugin's config; this node gives its plugins no data directory (NodeInfo.dataDirectory)`
    })
  })

/** Creates the directory, proves it is writable and clears temp files an interrupted backup left. */
const prepare = (directory: string) =>
  Effect.gen(function* () {
    const probe = path.join(directory, `.probe-${process.pid}`)
    yield* Effect.tryPromise({
      try: async () => {
        await fsp.mkdir(directory, { recursive: true, mode: 0o700 })
        await fsp.writeFile(probe, "")
        await fsp.rm(probe, { force: true })
      },
      catch: (error) =>
        new BackupError({
          reason: "io",
          detail: `cannot write to ${directory} (${messageOf(error)}). A plugin process may write only to its data directory: for any other directory add "fs:write:${directory}" to "permissions" in plugin.json and grant it under plugins.grants."${manifest.id}" in the node config`
        })
    })
    yield* SnapshotFile.removeTemporaries(directory)
  })

interface State {
  readonly lastSuccess: { readonly id: string; readonly at: string } | null
  readonly lastFailure: { readonly at: string; readonly reason: string } | null
  /** True while the most recent attempt failed. */
  readonly failing: boolean
}

export default Plugin.service({
  manifest,
  config: Config,
  program: Effect.gen(function* () {
    const config = yield* Config
    const directory = yield* resolveDirectory(config)
    yield* prepare(directory)
    // Handlers have no requirements: take what they use from the context once.
    const logger = yield* PluginLogger
    const events = yield* Events.Events
    const { nodeId } = yield* NodeInfo
    const storage = yield* Services.client(CoreServices.Storage)
    const state = yield* Ref.make<State>({ lastSuccess: null, lastFailure: null, failing: false })
    // One backup at a time: a manual run waits for a scheduled one (and the other way round).
    const lock = yield* Effect.makeSemaphore(1)
    const namespacePrefix = config.namespacePrefix ?? null

    const now = Effect.map(Clock.currentTimeMillis, (millis) => new Date(millis).toISOString())

    // Retention problems do not fail the backup that was just taken; they are logged.
    const applyRetention = Effect.gen(function* () {
      const all = yield* SnapshotFile.ids(directory)
      for (const id of all.slice(0, Math.max(0, all.length - config.retention))) {
        yield* SnapshotFile.remove(directory, id)
        yield* logger.log("info", `snapshot ${id} deleted (retention ${config.retention})`)
      }
    }).pipe(
      Effect.catchAll((error) =>
        logger.log("warn", `retention could not delete old snapshots: ${error.message}`, { directory })
      )
    )

    const snapshot = Effect.gen(function* () {
      const millis = yield* Clock.currentTimeMillis
      const header: SnapshotFile.Header = {
        format: SnapshotFile.format,
        version: SnapshotFile.version,
        id: SnapshotFile.makeId(millis),
        createdAt: new Date(millis).toISOString(),
        nodeId,
        namespacePrefix
      }
      const entries = yield* storage.snapshot(namespacePrefix === null ? {} : { namespacePrefix }).pipe(
        Effect.mapError(
          (error) =>
            new BackupError({
              reason: "storage",
              detail: `reading the node's storage failed: ${error.message}`
            })
        ),
        // The whole snapshot arrives as one reply: one frame of the plugin channel for a subprocess.
        Effect.catchAllDefect((defect) =>
          Effect.fail(
            new BackupError({
              reason: "storage",
              detail: `reading the node's storage failed: ${messageOf(defect)}. If the snapshot is larger than the plugin channel's frame cap (the node's subprocess.maxFrameBytes, 4 MiB by default), raise the cap or set "namespacePrefix" to back up less per snapshot`
            })
          )
        )
      )
      return yield* SnapshotFile.write(directory, header, entries)
    })

    const backup = (trigger: "schedule" | "manual"): Effect.Effect<SnapshotInfo, BackupError> =>
      lock.withPermits(1)(
        snapshot.pipe(
          Effect.tap((info) =>
            Effect.gen(function* () {
              const at = yield* now
              yield* Ref.update(state, (s) => ({ ...s, lastSuccess: { id: info.id, at }, failing: false }))
              yield* logger.log("info", `snapshot ${info.id}: ${info.entries} entries, ${info.bytes} bytes`, {
                trigger
              })
              yield* events
                .publish("backup.completed", { ...info, trigger })
                .pipe(
                  Effect.catchAll((error) =>
                    logger.log("warn", `could not publish backup.completed: ${error.message}`)
                  )
                )
              yield* applyRetention
            })
          ),
          Effect.catchAllCause((cause) =>
            Cause.isInterruptedOnly(cause)
              ? Effect.failCause(cause)
              : Effect.gen(function* () {
                  const reason = reasonOf(cause)
                  const at = yield* now
                  yield* Ref.update(state, (s) => ({ ...s, lastFailure: { at, reason }, failing: true }))
                  yield* logger.log("error", `backup failed: ${reason}`, { trigger, directory })
                  yield* events
                    .publish("backup.failed", { at, reason, trigger })
                    .pipe(
                      Effect.catchAll((error) =>
                        logger.log("error", `could not publish backup.failed: ${error.message}`)
                      )
                    )
                  const failure = Option.getOrUndefined(Cause.failureOption(cause))
                  return yield* failure instanceof BackupError
                    ? failure
                    : new BackupError({ reason: "storage", detail: reason })
                })
          )
        )
      )

    const status = Effect.gen(function* () {
      const { snapshots, unreadable } = yield* SnapshotFile.list(directory)
      const current = yield* Ref.get(state)
      return {
        status: current.failing ? "degraded" : "ok",
        directory,
        schedule: describeSchedule(config.schedule),
        retention: config.retention,
        lastSuccess: current.lastSuccess,
        lastFailure: current.lastFailure,
        snapshots,
        unreadable
      } satisfies Status
    })

    const restore = (id: string) =>
      Effect.gen(function* () {
        const verification = yield* SnapshotFile.verify(directory, id)
        if (!verification.valid) {
          return yield* new BackupError({
            reason: "corrupt",
            detail: `snapshot ${id} was not restored: ${verification.problem}. Restore another snapshot (backup.list)`
          })
        }
        type Op = CoreServices.WriteOp
        let written = 0
        let batches = 0
        const flush = (ops: ReadonlyArray<Op>) =>
          ops.length === 0
            ? Effect.void
            : storage.batch({ ops }).pipe(
                Effect.mapError(
                  (error) =>
                    new BackupError({
                      reason: "storage",
                      detail: `restore of ${id} stopped after ${written} entries in ${batches} batches: ${error.message}`
                    })
                ),
                // A batch larger than the plugin channel's frame cap (one huge value) cannot be sent.
                Effect.catchAllDefect((defect) =>
                  Effect.fail(
                    new BackupError({
                      reason: "storage",
                      detail: `restore of ${id} stopped after ${written} entries in ${batches} batches: ${messageOf(defect)}. A value larger than the plugin channel's frame cap (the node's subprocess.maxFrameBytes) cannot be restored through this plugin: raise the cap`
                    })
                  )
                ),
                Effect.tap(() =>
                  Effect.sync(() => {
                    written += ops.length
                    batches += 1
                  })
                )
              )
        // Batches bounded in bytes: one frame each over the plugin channel. One batch is atomic.
        let pending: Array<Op> = []
        let pendingBytes = 0
        yield* SnapshotFile.entries(directory, id).pipe(
          Stream.runForEach((entry) => {
            const op: Op = { _tag: "Put", namespace: entry.namespace, key: entry.key, value: entry.value }
            const size =
              Math.ceil((entry.value.byteLength * 4) / 3) + entry.key.length + entry.namespace.length + 64
            if (pending.length > 0 && pendingBytes + size > restoreBatchBytes) {
              const full = pending
              pending = [op]
              pendingBytes = size
              return flush(full)
            }
            pending.push(op)
            pendingBytes += size
            return Effect.void
          })
        )
        yield* flush(pending)
        yield* logger.log("info", `snapshot ${id} restored: ${written} entries in ${batches} batches`)
        return { id, entries: written, batches }
      })

    yield* logger.log("info", `backing up ${describeSchedule(config.schedule)} to ${directory}`, {
      retention: config.retention,
      namespacePrefix
    })
    // Runs in the plugin's Scope: stopping the plugin interrupts it. Failures are recorded by `backup`.
    yield* backup("schedule").pipe(
      Effect.ignore,
      Effect.schedule(scheduleOf(config.schedule)),
      Effect.forkScoped
    )

    return {
      services: [
        ServiceContract.implement(Backup, {
          run: () => backup("manual"),
          list: () => status,
          verify: ({ id }) => SnapshotFile.verify(directory, id),
          restore: ({ id }) => restore(id)
        })
      ],
      health: Effect.map(Ref.get(state), (current) =>
        current.failing && current.lastFailure !== null
          ? {
              status: "degraded" as const,
              details: `last backup failed at ${current.lastFailure.at}: ${current.lastFailure.reason}`
            }
          : {
              status: "healthy" as const,
              details:
                current.lastSuccess === null
                  ? `no backup yet (${describeSchedule(config.schedule)})`
                  : `last backup ${current.lastSuccess.id} at ${current.lastSuccess.at}`
            }
      )
    }
  })
})
