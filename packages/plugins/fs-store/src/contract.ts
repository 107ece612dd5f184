/**
 * The fs-store plugin's schemas and its `fs-store` service contract (stats
 * and an integrity check): what a caller imports, without the implementation.
 * The storage itself is reached through the node, not through this service.
 */
import * as path from "node:path"
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
// The SDK builds contracts from @effect/rpc's Rpc/RpcGroup but does not re-export them.
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Schema from "effect/Schema"

const AbsolutePath = Schema.String.pipe(
  Schema.filter(
    (dir) => path.isAbsolute(dir) || `${JSON.stringify(dir)} must be an absolute path (starting with "/")`,
    { identifier: "AbsolutePath", description: "an absolute directory path", jsonSchema: { pattern: "^/" } }
  )
)

const ByteCount = Schema.Number.pipe(
  Schema.filter(
    (bytes) =>
      (Number.isSafeInteger(bytes) && bytes >= 1) ||
      `must be a whole number of bytes, at least 1 (got ${bytes})`,
    { identifier: "ByteCount", description: "a number of bytes", jsonSchema: { type: "integer", minimum: 1 } }
  )
)

/** The fs-store plugin's configuration. */
export const Config = Schema.Struct({
  /**
   * Where objects and keys are kept. Default: the plugin's own data directory. Any other
   * directory needs `fs:write:<directory>` in plugin.json and the operator's grant.
   */
  directory: Schema.optionalWith(AbsolutePath, { exact: true }),
  /** Quota on stored value bytes (deduplicated); a store past it fails. Default: unbounded. */
  maxBytes: Schema.optionalWith(ByteCount, { exact: true })
})
/** @see Config */
export type Config = typeof Config.Type

/** What the store holds. */
export const Stats = Schema.Struct({
  directory: Schema.String,
  keys: Schema.Number,
  /** Distinct values (identical values are stored once). */
  objects: Schema.Number,
  /** Bytes of the distinct values: what counts against `maxBytes`. */
  usedBytes: Schema.Number,
  /** Bytes of every key's value, as if nothing were deduplicated. */
  logicalBytes: Schema.Number,
  totalBytes: Schema.NullOr(Schema.Number)
})
/** @see Stats */
export type Stats = typeof Stats.Type

/** What `check` found: every object re-hashed, every key's object looked up. */
export const CheckReport = Schema.Struct({
  keys: Schema.Number,
  objects: Schema.Number,
  /** Each problem names the key or object and what is wrong; empty when the store is sound. */
  problems: Schema.Array(Schema.String)
})
/** @see CheckReport */
export type CheckReport = typeof CheckReport.Type

/** `fs-store`: operator views of the store (reads only). */
export const FsStore = ServiceContract.make(
  "fs-store",
  RpcGroup.make(
    ServiceContract.read(Rpc.make("stats", { success: Stats })),
    ServiceContract.read(Rpc.make("check", { success: CheckReport }))
  )
)
