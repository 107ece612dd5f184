/**
 * The admin HTTP API as an HttpApi: every body has a Schema, shared by the
 * server and by the CLI's client. `/metrics`, the event stream and plugin
 * routes are served beside it as raw routes (text, SSE, pass-through).
 */

import { states } from "@blackhole/core/PluginState"
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as Schema from "effect/Schema"

/** A plugin's last process exit. */
export const LastExit = Schema.Struct({
  reason: Schema.Literal("clean", "crash", "oom", "limit-memory", "limit-sockets", "hang", "killed"),
  code: Schema.NullOr(Schema.Number),
  signal: Schema.NullOr(Schema.String),
  at: Schema.String
})

/** Plugin states, everywhere (API, CLI, metrics). */
export const PluginState = Schema.Literal(...states)

/** `GET /api/plugins` item (DESIGN.md "Interfaces other code relies on"). */
export const PluginSummary = Schema.Struct({
  id: Schema.String,
  name: Schema.String,
  version: Schema.String,
  type: Schema.Literal("service", "protocol", "storage", "integration"),
  loader: Schema.Literal("inprocess", "subprocess"),
  state: PluginState,
  restarts: Schema.Number,
  pid: Schema.NullOr(Schema.Number),
  memoryBytes: Schema.NullOr(Schema.Number),
  lastExit: Schema.NullOr(LastExit)
})
/** @see PluginSummary */
export type PluginSummary = typeof PluginSummary.Type

/** `GET /api/plugins/:id`: the summary plus what an operator needs to act. */
export const PluginDetail = Schema.Struct({
  ...PluginSummary.fields,
  error: Schema.NullOr(Schema.String),
  granted: Schema.Array(Schema.String),
  dependencies: Schema.Record({ key: Schema.String, value: Schema.String }),
  services: Schema.Array(Schema.String),
  routes: Schema.Array(Schema.String),
  /** The plugin's own view of its health while it runs. */
  health: Schema.NullOr(
    Schema.Struct({
      status: Schema.Literal("healthy", "degraded", "unhealthy"),
      details: Schema.optional(Schema.String)
    })
  )
})
/** @see PluginDetail */
export type PluginDetail = typeof PluginDetail.Type

/** `GET /health`. */
export const Health = Schema.Struct({
  status: Schema.Literal("ok", "degraded", "starting", "stopping"),
  nodeId: Schema.String,
  version: Schema.String,
  uptimeSeconds: Schema.Number,
  plugins: Schema.Struct({
    total: Schema.Number,
    running: Schema.Number,
    failed: Schema.Number,
    quarantined: Schema.Number
  })
})
/** @see Health */
export type Health = typeof Health.Type

/** The answer of start/stop/reload: the plugin's state when done, or `accepted` when it took too long. */
export const OperationResult = Schema.Struct({
  id: Schema.String,
  operation: Schema.Literal("start", "stop", "reload"),
  state: PluginState,
  done: Schema.Boolean,
  error: Schema.NullOr(Schema.String)
})
/** @see OperationResult */
export type OperationResult = typeof OperationResult.Type

/** `GET /api/p2p`. */
export const P2PInfo = Schema.Struct({
  peerId: Schema.String,
  listen: Schema.Array(Schema.String),
  peers: Schema.Array(
    Schema.Struct({
      peerId: Schema.String,
      addresses: Schema.Array(Schema.String),
      protocols: Schema.Array(Schema.String)
    })
  )
})

/** An error answered by the admin API: the encoded TaggedError shape. */
export class ApiError extends Schema.TaggedError<ApiError>()("ApiError", {
  message: Schema.String
}) {}

/** No plugin with that id. */
export class PluginNotFound extends Schema.TaggedError<PluginNotFound>()(
  "PluginNotFound",
  { pluginId: Schema.String, message: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

/** The node is starting or stopping (health answers 503 with its body). */
export class NotReady extends Schema.TaggedError<NotReady>()(
  "NotReady",
  { status: Schema.Literal("starting", "stopping"), message: Schema.String },
  HttpApiSchema.annotations({ status: 503 })
) {}

/** P2P is not enabled on this node. */
export class P2PDisabled extends Schema.TaggedError<P2PDisabled>()(
  "P2PDisabled",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

/** A request without the bearer token where one is required. */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 401 })
) {}

/** Log levels a plugin's logging can be set to at runtime. */
export const LogLevel = Schema.Literal("debug", "info", "warn", "error")

const id = HttpApiSchema.param("id", Schema.String)

/** Health and node facts. */
export class HealthGroup extends HttpApiGroup.make("health")
  .add(HttpApiEndpoint.get("health", "/health").addSuccess(Health).addError(NotReady))
  .add(HttpApiEndpoint.get("p2p", "/api/p2p").addSuccess(P2PInfo).addError(P2PDisabled)) {}

/** Plugins: list, inspect, operate. */
export class PluginsGroup extends HttpApiGroup.make("plugins")
  .add(HttpApiEndpoint.get("list", "/api/plugins").addSuccess(Schema.Array(PluginSummary)))
  .add(HttpApiEndpoint.get("get")`/api/plugins/${id}`.addSuccess(PluginDetail).addError(PluginNotFound))
  .add(
    HttpApiEndpoint.post("start")`/api/plugins/${id}/start`
      .addSuccess(OperationResult)
      .addError(PluginNotFound)
  )
  .add(
    HttpApiEndpoint.post("stop")`/api/plugins/${id}/stop`.addSuccess(OperationResult).addError(PluginNotFound)
  )
  .add(
    HttpApiEndpoint.post("reload")`/api/plugins/${id}/reload`
      .addSuccess(OperationResult)
      .addError(PluginNotFound)
  )
  .add(
    HttpApiEndpoint.post("sync")`/api/plugins/${id}/sync`
      .addSuccess(Schema.Struct({ id: Schema.String, synced: Schema.Boolean }))
      .addError(PluginNotFound)
      .addError(ApiError, { status: 409 })
  )
  .add(
    HttpApiEndpoint.post("logLevel")`/api/plugins/${id}/log-level`
      .setPayload(Schema.Struct({ level: LogLevel }))
      .addSuccess(Schema.Struct({ id: Schema.String, level: LogLevel }))
      .addError(PluginNotFound)
  )
  .add(
    HttpApiEndpoint.post("profile")`/api/plugins/${id}/profile`
      .setPayload(Schema.Struct({ seconds: Schema.Number.pipe(Schema.between(1, 300)) }))
      .addSuccess(Schema.Struct({ id: Schema.String, file: Schema.String }))
      .addError(PluginNotFound)
      .addError(ApiError, { status: 409 })
  ) {}

/** The whole admin API. */
export class AdminApi extends HttpApi.make("blackhole-admin")
  .add(HealthGroup)
  .add(PluginsGroup)
  .addError(Unauthorized) {}
