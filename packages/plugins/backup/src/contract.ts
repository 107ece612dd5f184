/**
 * The `backup` service contract and its schemas: what a caller imports to talk
 * to the backup plugin, without its implementation.
 */
import * as path from "node:path"
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
// The SDK builds contracts from @effect/rpc's Rpc/RpcGroup but does not re-export them.
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Cron from "effect/Cron"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"

/** A cron expression (5 fields, or 6 with seconds first), evaluated in the node's local time zone. */
export const CronExpression = Schema.String.pipe(
  Schema.filter(
    (expression) =>
      Either.match(Cron.parse(expression), {
        onLeft: (error) =>
          `${JSON.stringify(expression)} is not a cron expression (${error.message}); expected e.g. "0 3 * * *" for 03:00 daily`,
        onRight: () => true
      }),
    {
      identifier: "CronExpression",
      description: 'a cron expression, e.g. "0 3 * * *"',
      jsonSchema: { type: "string", minLength: 9 }
    }
  )
)

/** An interval between backups, in milliseconds (at least 100). */
export const IntervalMillis = Schema.Number.pipe(
  Schema.filter(
    (millis) =>
      (Number.isSafeInteger(millis) && millis >= 100) ||
      `must be a whole number of milliseconds, at least 100 (got ${millis})`,
    {
      identifier: "IntervalMillis",
      description: "milliseconds between backups",
      jsonSchema: { type: "integer", minimum: 100 }
    }
  )
)

/** `schedule`: an interval in milliseconds or a cron expression. */
export const Schedule = Schema.Union(IntervalMillis, CronExpression)
/** @see Schedule */
export type Schedule = typeof Schedule.Type

const AbsolutePath = Schema.String.pipe(
  Schema.filter(
    (dir) => path.isAbsolute(dir) || `${JSON.stringify(dir)} must be an absolute path (starting with "/")`,
    { identifier: "AbsolutePath", description: "an absolute directory path", jsonSchema: { pattern: "^/" } }
  )
)

const Retention = Schema.Number.pipe(
  Schema.filter(
    (count) =>
      (Number.isSafeInteger(count) && count >= 1) || `must be a whole number, at least 1 (got ${count})`,
    {
      identifier: "Retention",
      description: "how many snapshots to keep",
      jsonSchema: { type: "integer", minimum: 1 }
    }
  )
)

/** The backup plugin's configuration; every field has a default. */
export const Config = Schema.Struct({
  /** When to take snapshots: milliseconds between them, or a cron expression. Default hourly. */
  schedule: Schema.optionalWith(Schedule, { default: () => 3_600_000 }).annotations({
    description: "milliseconds between backups, or a cron expression; default 3600000 (hourly)"
  }),
  /** How many snapshots to keep; after each successful backup the oldest beyond this are deleted. */
  retention: Schema.optionalWith(Retention, { default: () => 24 }).annotations({
    description: "snapshots kept; older ones are deleted after each successful backup; default 24"
  }),
  /**
   * Where snapshot files go. Default: the plugin's own data directory. Any other directory needs
   * `fs:write:<directory>` in plugin.json and the operator's grant.
   */
  directory: Schema.optionalWith(AbsolutePath, { exact: true }).annotations({
    description: "where snapshots go; default the plugin's data directory (others need fs:write:<dir>)"
  }),
  /** Back up only namespaces starting with this; default every namespace. */
  namespacePrefix: Schema.optionalWith(Schema.String, { exact: true }).annotations({
    description: "back up only namespaces starting with this; default all"
  })
})
/** @see Config */
export type Config = typeof Config.Type

/** Why a backup operation failed; `detail` says what to do about it. */
export class BackupError extends Schema.TaggedError<BackupError>()("BackupError", {
  reason: Schema.Literal("not-found", "corrupt", "storage", "io"),
  detail: Schema.String
}) {
  override get message(): string {
    return `backup ${this.reason}: ${this.detail}`
  }
}

/** A snapshot id: its creation time (UTC, sortable) and a random suffix. */
export const SnapshotId = Schema.String.pipe(
  Schema.pattern(/^\d{8}T\d{9}Z-[0-9a-f]{6}$/, {
    message: () => 'a snapshot id looks like "20250101T030000000Z-1a2b3c" (see backup.list)'
  })
)

/** A snapshot as `list` reports it (read from its header and footer, not verified). */
export const SnapshotInfo = Schema.Struct({
  id: Schema.String,
  /** ISO time the snapshot was taken. */
  createdAt: Schema.String,
  namespacePrefix: Schema.NullOr(Schema.String),
  /** Number of entries, from the footer. */
  entries: Schema.Number,
  /** Size of the file. */
  bytes: Schema.Number,
  /** SHA-256 (hex) of the file up to the footer, as recorded in the footer. */
  checksum: Schema.String
})
/** @see SnapshotInfo */
export type SnapshotInfo = typeof SnapshotInfo.Type

/** A file in the backup directory that looks like a snapshot but whose header or footer cannot be read. */
export const UnreadableSnapshot = Schema.Struct({
  id: Schema.String,
  bytes: Schema.Number,
  problem: Schema.String
})

/** One backup attempt that failed. */
export const Failure = Schema.Struct({ at: Schema.String, reason: Schema.String })

/** What `list` returns: the snapshots, newest first, and how the last backups went. */
export const Status = Schema.Struct({
  /** `degraded` while the most recent backup attempt failed. */
  status: Schema.Literal("ok", "degraded"),
  directory: Schema.String,
  schedule: Schema.String,
  retention: Schema.Number,
  lastSuccess: Schema.NullOr(Schema.Struct({ id: Schema.String, at: Schema.String })),
  lastFailure: Schema.NullOr(Failure),
  snapshots: Schema.Array(SnapshotInfo),
  unreadable: Schema.Array(UnreadableSnapshot)
})
/** @see Status */
export type Status = typeof Status.Type

/** What `verify` found. */
export const Verification = Schema.Struct({
  id: Schema.String,
  valid: Schema.Boolean,
  /** Entries counted in the file. */
  entries: Schema.NullOr(Schema.Number),
  /** The checksum the footer records, and the one computed from the file. */
  expected: Schema.NullOr(Schema.String),
  actual: Schema.NullOr(Schema.String),
  /** Why it is not valid. */
  problem: Schema.NullOr(Schema.String)
})
/** @see Verification */
export type Verification = typeof Verification.Type

/** What `restore` wrote back. */
export const Restored = Schema.Struct({
  id: Schema.String,
  entries: Schema.Number,
  /** Storage batches used: 1 means the restore was atomic. */
  batches: Schema.Number
})

/** `backup.completed` event data. */
export const Completed = Schema.Struct({
  ...SnapshotInfo.fields,
  trigger: Schema.Literal("schedule", "manual")
})

/** `backup.failed` event data. */
export const Failed = Schema.Struct({
  ...Failure.fields,
  trigger: Schema.Literal("schedule", "manual")
})

/** The `backup` service. */
export const Backup = ServiceContract.make(
  "backup",
  RpcGroup.make(
    ServiceContract.write(Rpc.make("run", { success: SnapshotInfo, error: BackupError })),
    ServiceContract.read(Rpc.make("list", { success: Status, error: BackupError })),
    ServiceContract.read(
      Rpc.make("verify", { payload: { id: SnapshotId }, success: Verification, error: BackupError })
    ),
    // admin: it overwrites the node's storage.
    ServiceContract.admin(
      Rpc.make("restore", { payload: { id: SnapshotId }, success: Restored, error: BackupError })
    )
  )
)
