/**
 * The contracts of the host ↔ plugin channel: one RpcGroup per direction,
 * carried over Blackhole's framing (see `Framing` and docs/protocol.md).
 * Host→plugin: start the program, stop, health, invoke a service method,
 * run a hook, the typed handlers of storage/protocol/integration plugins.
 * Plugin→host: the context services (log, events, storage, mesh, hooks).
 */
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Schema from "effect/Schema"
import {
  HookVetoed,
  InvalidConfig,
  MeshError,
  PermissionDenied,
  PluginFailure,
  QuotaExceeded,
  RateLimited,
  StorageError
} from "./Errors.js"
import { Event } from "./Event.js"
import { Veto } from "./Hooks.js"
import * as HttpEndpoint from "./HttpEndpoint.js"
import { Environment } from "./NodeInfo.js"
import { HealthStatus, StorageFailure } from "./Plugin.js"
import { LogLevel } from "./PluginLogger.js"
import { MethodError } from "./ServiceContract.js"

/** Version of the handshake and of these groups; both sides must agree. */
export const version = 1

/** First frame on the channel, from the plugin. */
export const Hello = Schema.Struct({
  type: Schema.Literal("hello"),
  version: Schema.Number,
  pluginId: Schema.String,
  /** The per-spawn secret the host handed this process. */
  secret: Schema.String,
  pid: Schema.Number
})
/** @see Hello */
export type Hello = typeof Hello.Type

/** The host's answer: the channel is open. */
export const Welcome = Schema.Struct({ type: Schema.Literal("welcome"), version: Schema.Number })

/** A service a plugin serves: its name and each method's access class (the host keeps the contract shape). */
export const ServedService = Schema.Struct({
  name: Schema.String,
  methods: Schema.Array(
    Schema.Struct({ tag: Schema.String, access: Schema.Literal("read", "write", "admin") })
  )
})

/** What the program returned, as the host needs to know it. */
export const Started = Schema.Struct({
  services: Schema.Array(ServedService),
  health: Schema.Boolean,
  storage: Schema.Boolean,
  integration: Schema.NullOr(Schema.Struct({ kind: Schema.String })),
  protocol: Schema.NullOr(Schema.Struct({ name: Schema.String, version: Schema.String })),
  http: Schema.NullOr(
    Schema.Struct({
      path: Schema.String,
      routes: Schema.Array(Schema.Struct({ method: HttpEndpoint.Method, path: Schema.String }))
    })
  )
})
/** @see Started */
export type Started = typeof Started.Type

/** One operation on a storage plugin's backend. */
export const StorageOp = Schema.Union(
  Schema.TaggedStruct("Store", { key: Schema.String, value: Schema.Uint8ArrayFromBase64 }),
  Schema.TaggedStruct("Retrieve", { key: Schema.String }),
  Schema.TaggedStruct("Delete", { key: Schema.String }),
  Schema.TaggedStruct("List", { prefix: Schema.String }),
  Schema.TaggedStruct("Capacity", {})
)

/** Host → plugin. */
export class HostToPlugin extends RpcGroup.make(
  Rpc.make("Start", {
    payload: {
      config: Schema.Unknown,
      nodeInfo: Schema.Struct({
        nodeId: Schema.String,
        version: Schema.String,
        environment: Environment,
        dataDirectory: Schema.optionalWith(Schema.String, { exact: true })
      })
    },
    success: Started,
    error: Schema.Union(InvalidConfig, PluginFailure)
  }),
  Rpc.make("Stop"),
  Rpc.make("Health", { success: HealthStatus }),
  Rpc.make("Invoke", {
    payload: { service: Schema.String, method: Schema.String, payload: Schema.Unknown },
    success: Schema.Unknown,
    error: Schema.Union(MeshError, MethodError)
  }),
  Rpc.make("RunHook", { payload: { id: Schema.Number, payload: Schema.Unknown }, error: Veto }),
  Rpc.make("Storage", { payload: { op: StorageOp }, success: Schema.Unknown, error: StorageFailure }),
  Rpc.make("Sync"),
  Rpc.make("ProtocolMessage", { payload: { peer: Schema.String, message: Schema.Uint8ArrayFromBase64 } }),
  Rpc.make("PeerEvent", { payload: { peer: Schema.String, connected: Schema.Boolean } }),
  Rpc.make("Http", {
    payload: { route: Schema.Number, request: HttpEndpoint.Request },
    success: HttpEndpoint.Response
  })
) {}

const StorageReadError = Schema.Union(PermissionDenied, RateLimited, StorageError)
const StorageWriteError = Schema.Union(PermissionDenied, RateLimited, QuotaExceeded, HookVetoed, StorageError)

/** Plugin → host: the context services. */
export class PluginToHost extends RpcGroup.make(
  Rpc.make("Log", {
    payload: {
      level: LogLevel,
      message: Schema.String,
      annotations: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown }))
    }
  }),
  Rpc.make("Publish", {
    payload: { type: Schema.String, data: Schema.Unknown },
    error: Schema.Union(PermissionDenied, RateLimited, QuotaExceeded)
  }),
  Rpc.make("Subscribe", {
    payload: { pattern: Schema.String },
    success: Event,
    error: PermissionDenied,
    stream: true
  }),
  Rpc.make("StorageStore", {
    payload: { key: Schema.String, value: Schema.Uint8ArrayFromBase64 },
    error: StorageWriteError
  }),
  Rpc.make("StorageRetrieve", {
    payload: { key: Schema.String },
    success: Schema.NullOr(Schema.Uint8ArrayFromBase64),
    error: StorageReadError
  }),
  Rpc.make("StorageDelete", {
    payload: { key: Schema.String },
    success: Schema.Boolean,
    error: StorageWriteError
  }),
  Rpc.make("StorageList", {
    payload: { prefix: Schema.String },
    success: Schema.Array(Schema.String),
    error: StorageReadError
  }),
  Rpc.make("Call", {
    payload: { service: Schema.String, method: Schema.String, payload: Schema.Unknown },
    success: Schema.Unknown,
    error: Schema.Union(MeshError, MethodError)
  }),
  Rpc.make("RegisterHook", {
    payload: {
      id: Schema.Number,
      name: Schema.String,
      priority: Schema.optional(Schema.Number),
      timeoutMillis: Schema.optional(Schema.Number)
    },
    error: PermissionDenied
  }),
  Rpc.make("UnregisterHook", { payload: { id: Schema.Number } }),
  Rpc.make("RunCustomHook", {
    payload: { name: Schema.String, payload: Schema.Unknown },
    error: Schema.Union(PermissionDenied, HookVetoed)
  })
) {}
