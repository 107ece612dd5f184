/**
 * Errors that may cross the host ↔ plugin process boundary. Every one is a
 * `Schema.TaggedError`, so it encodes to `{ _tag, ...fields }` on the wire and
 * decodes back to the same class on the other side.
 */
import type * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as issues from "./internal/issues.js"

/** One problem found while decoding input: where it is and what is wrong. */
export class Issue extends Schema.Class<Issue>("Issue")({
  path: Schema.String,
  message: Schema.String
}) {}

const formatIssues = (list: ReadonlyArray<Issue>): string =>
  list.map((issue) => `  - ${issue.path === "" ? "(root)" : issue.path}: ${issue.message}`).join("\n")

/** A caller lacks the permission an operation requires. */
export class PermissionDenied extends Schema.TaggedError<PermissionDenied>()("PermissionDenied", {
  /** The permission the operation needed, e.g. `storage:write`. */
  permission: Schema.String,
  /** Who asked: a plugin id, or `operator`. */
  principal: Schema.String
}) {
  override get message(): string {
    return `${this.principal} lacks permission "${this.permission}": request it in plugin.json "permissions" (sensitive permissions also need the operator's grant under plugins.grants."${this.principal}")`
  }
}

/** A plugin requested sensitive permissions the operator has not granted; it does not start. */
export class MissingGrants extends Schema.TaggedError<MissingGrants>()("MissingGrants", {
  pluginId: Schema.String,
  missing: Schema.Array(Schema.String)
}) {
  override get message(): string {
    return `plugin ${this.pluginId} requests sensitive permissions the operator has not granted: ${this.missing.join(", ")}. Add them to the node config under plugins.grants."${this.pluginId}" or remove them from plugin.json`
  }
}

/** A resource quota (memory, sockets, in-flight calls) would be exceeded. */
export class QuotaExceeded extends Schema.TaggedError<QuotaExceeded>()("QuotaExceeded", {
  principal: Schema.String,
  resource: Schema.Literal("memory", "sockets", "concurrency"),
  limit: Schema.Number,
  requested: Schema.Number
}) {
  override get message(): string {
    return `${this.principal} would exceed its ${this.resource} quota: ${this.requested} requested, limit ${this.limit}`
  }
}

/** A plugin exceeded its declared `resources.rateLimit`. */
export class RateLimited extends Schema.TaggedError<RateLimited>()("RateLimited", {
  principal: Schema.String,
  limit: Schema.String,
  retryAfterMillis: Schema.Number
}) {
  override get message(): string {
    return `${this.principal} exceeded its rate limit of ${this.limit}; retry after ${this.retryAfterMillis} ms`
  }
}

/** No service of that name is registered on the mesh. */
export class ServiceNotFound extends Schema.TaggedError<ServiceNotFound>()("ServiceNotFound", {
  service: Schema.String
}) {
  override get message(): string {
    return `no service named "${this.service}" is registered on the mesh (is the plugin that provides it installed and running?)`
  }
}

/** The service exists but has no method of that name. */
export class MethodNotFound extends Schema.TaggedError<MethodNotFound>()("MethodNotFound", {
  service: Schema.String,
  method: Schema.String
}) {
  override get message(): string {
    return `service "${this.service}" has no method "${this.method}"`
  }
}

/** A service name is reserved for the core or already registered. */
export class ServiceNameTaken extends Schema.TaggedError<ServiceNameTaken>()("ServiceNameTaken", {
  service: Schema.String,
  owner: Schema.String
}) {
  override get message(): string {
    return `service name "${this.service}" is already taken by ${this.owner}`
  }
}

/** No plugin with that id is known to the node. */
export class PluginNotFound extends Schema.TaggedError<PluginNotFound>()("PluginNotFound", {
  pluginId: Schema.String
}) {
  override get message(): string {
    return `no plugin with id "${this.pluginId}" is registered`
  }
}

/** The plugin exists but cannot serve calls now (stopped, failed, restarting, quarantined). */
export class PluginUnavailable extends Schema.TaggedError<PluginUnavailable>()("PluginUnavailable", {
  pluginId: Schema.String,
  state: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `plugin ${this.pluginId} is unavailable (${this.state}): ${this.reason}`
  }
}

/** A `plugin.json` failed validation; `issues` lists every bad field. */
export class InvalidManifest extends Schema.TaggedError<InvalidManifest>()("InvalidManifest", {
  /** Where the manifest came from (a file path or a plugin id). */
  source: Schema.String,
  issues: Schema.Array(Issue)
}) {
  override get message(): string {
    return `invalid plugin manifest ${this.source}:\n${formatIssues(this.issues)}`
  }
}

/** A plugin's configuration failed validation; `issues` lists every bad field. */
export class InvalidConfig extends Schema.TaggedError<InvalidConfig>()("InvalidConfig", {
  pluginId: Schema.String,
  issues: Schema.Array(Issue)
}) {
  override get message(): string {
    return `invalid configuration for plugin ${this.pluginId}:\n${formatIssues(this.issues)}`
  }
}

/** A call's payload did not match the method's schema. */
export class InvalidPayload extends Schema.TaggedError<InvalidPayload>()("InvalidPayload", {
  service: Schema.String,
  method: Schema.String,
  issues: Schema.Array(Issue)
}) {
  override get message(): string {
    return `invalid payload for ${this.service}.${this.method}:\n${formatIssues(this.issues)}`
  }
}

/** A `before` hook refused the operation (or failed or timed out: hooks fail closed). */
export class HookVetoed extends Schema.TaggedError<HookVetoed>()("HookVetoed", {
  hook: Schema.String,
  /** The plugin (or `core`) whose hook vetoed. */
  by: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.hook} vetoed by ${this.by}: ${this.reason}`
  }
}

/** The plugin's declared compatibility range excludes this node's version. */
export class IncompatiblePlugin extends Schema.TaggedError<IncompatiblePlugin>()("IncompatiblePlugin", {
  pluginId: Schema.String,
  nodeVersion: Schema.String,
  minVersion: Schema.String,
  maxVersion: Schema.String
}) {
  override get message(): string {
    return `plugin ${this.pluginId} supports node versions ${this.minVersion}–${this.maxVersion}, this node is ${this.nodeVersion}`
  }
}

/** A plugin's `dependencies` cannot be satisfied (missing, wrong version, or a cycle). */
export class DependencyError extends Schema.TaggedError<DependencyError>()("DependencyError", {
  pluginId: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `plugin ${this.pluginId}: ${this.reason}`
  }
}

/** A plugin's program or handler failed in a way its contract does not describe. */
export class PluginFailure extends Schema.TaggedError<PluginFailure>()("PluginFailure", {
  pluginId: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `plugin ${this.pluginId} failed: ${this.reason}`
  }
}

/** Storage failed for a reason other than permissions or quota (e.g. disk full). */
export class StorageError extends Schema.TaggedError<StorageError>()("StorageError", {
  operation: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `storage ${this.operation} failed: ${this.reason}`
  }
}

/** Errors any call across the mesh may fail with, besides the method's own. */
export const MeshError = Schema.Union(
  PermissionDenied,
  RateLimited,
  QuotaExceeded,
  ServiceNotFound,
  MethodNotFound,
  InvalidPayload,
  PluginUnavailable,
  HookVetoed,
  PluginFailure
)
/** @see MeshError */
export type MeshError = typeof MeshError.Type

/**
 * Every problem of a Schema decode failure as an `Issue` with a readable path
 * (`plugins.grants["a.b"][0]`), without the "Expected undefined" echo of optional fields.
 */
export const issuesOf = (error: ParseResult.ParseError): Array<Issue> => issues.fromParseError(error)
