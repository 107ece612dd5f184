/**
 * Contracts of the node's core services on the mesh. Plugins call them with
 * `Services.client(CoreServices.Storage)`; `read` methods are granted on
 * request, `write` and `admin` ones need the operator's grant.
 */
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Schema from "effect/Schema"
import { HookVetoed, PermissionDenied, StorageError } from "./Errors.js"
import { Environment } from "./NodeInfo.js"
import { Capacity } from "./Plugin.js"
import * as ServiceContract from "./ServiceContract.js"

/** `identity`: the node's Ed25519 identity. */
export const Identity = ServiceContract.make(
  "identity",
  RpcGroup.make(
    ServiceContract.read(
      Rpc.make("info", {
        success: Schema.Struct({ nodeId: Schema.String, publicKey: Schema.Uint8ArrayFromBase64 })
      })
    ),
    ServiceContract.read(
      Rpc.make("verify", {
        payload: {
          data: Schema.Uint8ArrayFromBase64,
          signature: Schema.Uint8ArrayFromBase64,
          /** Defaults to the node's own key. */
          publicKey: Schema.optional(Schema.Uint8ArrayFromBase64)
        },
        success: Schema.Boolean
      })
    ),
    ServiceContract.admin(
      Rpc.make("sign", {
        payload: { data: Schema.Uint8ArrayFromBase64 },
        success: Schema.Uint8ArrayFromBase64
      })
    )
  )
)

/** A stored entry, as the storage service returns it. */
export const Entry = Schema.Struct({
  namespace: Schema.String,
  key: Schema.String,
  value: Schema.Uint8ArrayFromBase64
})
/** @see Entry */
export type Entry = typeof Entry.Type

/** One write of an atomic batch. */
export const WriteOp = Schema.Union(
  Schema.TaggedStruct("Put", {
    namespace: Schema.String,
    key: Schema.String,
    value: Schema.Uint8ArrayFromBase64
  }),
  Schema.TaggedStruct("Delete", { namespace: Schema.String, key: Schema.String })
)
/** @see WriteOp */
export type WriteOp = typeof WriteOp.Type

/** Why a write through the storage service failed: a hook vetoed it, or storage itself failed. */
export const WriteError = Schema.Union(HookVetoed, StorageError)

/** `storage`: every namespace of the node's storage (for backup, sync, admin tools). */
export const Storage = ServiceContract.make(
  "storage",
  RpcGroup.make(
    ServiceContract.read(
      Rpc.make("retrieve", {
        payload: { namespace: Schema.String, key: Schema.String },
        success: Schema.NullOr(Schema.Uint8ArrayFromBase64),
        error: StorageError
      })
    ),
    ServiceContract.read(
      Rpc.make("list", {
        payload: { namespace: Schema.String, prefix: Schema.String },
        success: Schema.Array(Schema.String),
        error: StorageError
      })
    ),
    ServiceContract.read(Rpc.make("capacity", { success: Capacity, error: StorageError })),
    ServiceContract.read(
      Rpc.make("snapshot", {
        payload: { namespacePrefix: Schema.optional(Schema.String) },
        success: Schema.Array(Entry),
        error: StorageError
      })
    ),
    ServiceContract.write(
      Rpc.make("store", {
        payload: { namespace: Schema.String, key: Schema.String, value: Schema.Uint8ArrayFromBase64 },
        error: WriteError
      })
    ),
    ServiceContract.write(
      Rpc.make("delete", {
        payload: { namespace: Schema.String, key: Schema.String },
        success: Schema.Boolean,
        error: WriteError
      })
    ),
    ServiceContract.write(Rpc.make("batch", { payload: { ops: Schema.Array(WriteOp) }, error: WriteError }))
  )
)

/** A plugin as the `node` service reports it. */
export const PluginSummary = Schema.Struct({
  id: Schema.String,
  name: Schema.String,
  version: Schema.String,
  type: Schema.String,
  loader: Schema.Literal("inprocess", "subprocess"),
  state: Schema.String,
  restarts: Schema.Number
})

/** `node`: facts about the node and its plugins. */
export const Node = ServiceContract.make(
  "node",
  RpcGroup.make(
    ServiceContract.read(
      Rpc.make("info", {
        success: Schema.Struct({
          nodeId: Schema.String,
          version: Schema.String,
          environment: Environment,
          uptimeMillis: Schema.Number
        })
      })
    ),
    ServiceContract.read(Rpc.make("plugins", { success: Schema.Array(PluginSummary) }))
  )
)

/** A peer as the `p2p` service reports it. */
export const Peer = Schema.Struct({
  peerId: Schema.String,
  addresses: Schema.Array(Schema.String),
  protocols: Schema.Array(Schema.String)
})

/** Why a message could not be sent to a peer. */
export class PeerError extends Schema.TaggedError<PeerError>()("PeerError", {
  peer: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `peer ${this.peer}: ${this.reason}`
  }
}

/**
 * `p2p`: this node's peer-to-peer network. A protocol plugin sends its messages
 * with `send` (it needs `p2p:protocol:<name>` for that protocol, and the
 * operator's grant of `service:p2p:send`); inbound messages reach its handlers.
 */
export const P2P = ServiceContract.make(
  "p2p",
  RpcGroup.make(
    ServiceContract.read(
      Rpc.make("info", {
        success: Schema.Struct({
          peerId: Schema.String,
          listen: Schema.Array(Schema.String),
          peers: Schema.Array(Peer)
        })
      })
    ),
    ServiceContract.write(
      Rpc.make("send", {
        payload: {
          /** The protocol's name, as the sending plugin declared it (`sync` for `/blackhole/sync/1.0.0`). */
          protocol: Schema.String,
          peer: Schema.String,
          message: Schema.Uint8ArrayFromBase64
        },
        error: Schema.Union(PeerError, PermissionDenied)
      })
    )
  )
)

/** The access class of a core service's method, for permission classification. */
export const coreMethodAccess = (
  service: string,
  method: string
): ServiceContract.AccessClass | undefined => {
  const contract = (
    { identity: Identity, storage: Storage, node: Node, p2p: P2P } as Record<string, ServiceContract.Any>
  )[service]
  return contract === undefined ? undefined : ServiceContract.accessOf(contract, method)
}
