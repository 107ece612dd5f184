/**
 * The `sync` service contract, the plugin's configuration and the data of the events it
 * publishes: what a caller imports (schemas only, no implementation), e.g.
 * `Services.client(Sync)` from another plugin.
 */
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
// The SDK builds contracts from @effect/rpc's Rpc and RpcGroup and does not re-export them.
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Schema from "effect/Schema"

/** The protocol, as registered with libp2p: `/blackhole/sync/1.0.0`. */
export const protocol = { name: "sync", version: "1.0.0" } as const

/** This plugin's id: its writes are the ones it applies from peers, never synced back as local ones. */
export const pluginId = "dev.blackhole.sync"

const integer = (min: number, max: number, description: string, fallback: number) =>
  Schema.optionalWith(
    Schema.Int.pipe(Schema.between(min, max)).annotations({ description, default: fallback }),
    { default: () => fallback }
  )

const NamespaceName = Schema.String.pipe(
  Schema.filter(
    (namespace) =>
      namespace === ""
        ? "must not be empty"
        : namespace !== `plugin/${pluginId}` ||
          "is the sync plugin's own namespace (its version metadata), which cannot itself be synced",
    {
      jsonSchema: {
        type: "string",
        minLength: 1,
        description: "The storage namespace kept in sync between peers",
        default: "shared"
      }
    }
  )
)

/** The sync plugin's configuration; every field has a default. */
export const Config = Schema.Struct({
  /** The storage namespace kept identical on every peer. */
  namespace: Schema.optionalWith(NamespaceName, { default: () => "shared" }),
  /** How often every connected peer is offered a full digest (repairs anything a live push missed). */
  antiEntropyIntervalMillis: integer(
    100,
    86_400_000,
    "Milliseconds between anti-entropy rounds (digest exchanges) with every connected peer",
    30_000
  ),
  /**
   * Largest message sent, in bytes. Must not exceed the node's `p2p.max_message_bytes` (1 MiB by
   * default): larger ones are refused by the node.
   */
  maxMessageBytes: integer(
    4096,
    64 * 1024 * 1024,
    "Largest message sent, in bytes; keep it at or below the node's p2p.max_message_bytes",
    1024 * 1024
  ),
  /** Most records in one `Records` message (each message also stays under `maxMessageBytes`). */
  maxBatchRecords: integer(1, 100_000, "Most records in one Records message", 256),
  /** Most keys in one `Digest` message (each message also stays under `maxMessageBytes`). */
  maxDigestEntries: integer(1, 1_000_000, "Most keys in one Digest message", 4096),
  /**
   * How far ahead of this node's wall clock a record's timestamp may be. A record further ahead is
   * not applied (yet): a peer with a runaway clock cannot push every future write aside.
   */
  maxClockDriftMillis: integer(
    1000,
    86_400_000,
    "How far (ms) a peer's record timestamp may be ahead of this node's clock; later ones wait",
    60_000
  )
})
/** @see Config */
export type Config = typeof Config.Type

/** A record's version: hybrid logical clock (milliseconds, counter) and the writing node. */
export const Version = Schema.Struct({
  millis: Schema.Number,
  counter: Schema.Number,
  node: Schema.String
})
/** @see Version */
export type Version = typeof Version.Type

/** What this node holds for a key (`inspect`). */
export const RecordInfo = Schema.Struct({
  key: Schema.String,
  version: Version,
  /** The version this write replaced on its writer; null for the key's first write there. */
  prev: Schema.NullOr(Version),
  /** True for a tombstone: the key was deleted, and the deletion is synced like a write. */
  deleted: Schema.Boolean
})
/** @see RecordInfo */
export type RecordInfo = typeof RecordInfo.Type

/** A peer as `status` reports it. */
export const PeerStatus = Schema.Struct({
  peerId: Schema.String,
  connected: Schema.Boolean,
  /** When the last round of this node's digest to the peer completed (ms since the epoch). */
  lastSyncAt: Schema.NullOr(Schema.Number),
  /** Completed rounds. */
  rounds: Schema.Number,
  recordsSent: Schema.Number,
  recordsReceived: Schema.Number,
  recordsApplied: Schema.Number,
  conflicts: Schema.Number,
  /** Messages from it that did not decode, or records it sent too far in the future. */
  rejected: Schema.Number,
  lastError: Schema.NullOr(Schema.String)
})
/** @see PeerStatus */
export type PeerStatus = typeof PeerStatus.Type

/** What `status` returns. */
export const Status = Schema.Struct({
  nodeId: Schema.String,
  namespace: Schema.String,
  /** Live keys this node holds versions for. */
  records: Schema.Number,
  tombstones: Schema.Number,
  /** Local writes noticed and not yet versioned. */
  pending: Schema.Number,
  /** Every peer seen since the plugin started. */
  peers: Schema.Array(PeerStatus),
  /** Records never sent because one alone exceeds `maxMessageBytes`. */
  oversize: Schema.Number
})
/** @see Status */
export type Status = typeof Status.Type

/** `sync.applied`: a record from a peer was written here. */
export const Applied = Schema.Struct({
  key: Schema.String,
  /** The peer it came from (not necessarily its writer: see `version`). */
  from: Schema.String,
  deleted: Schema.Boolean,
  /** `<millis>.<counter>@<node>` */
  version: Schema.String
})

/** `sync.conflict`: two concurrent writes of a key met here; `winner` is kept on every node. */
export const Conflict = Schema.Struct({
  key: Schema.String,
  from: Schema.String,
  /** `<millis>.<counter>@<node>` of the kept write, and of the discarded one. */
  winner: Schema.String,
  loser: Schema.String
})

/** `sync.peer.synced`: a round completed: this node has what the peer had newer at its start. */
export const PeerSynced = Schema.Struct({ peer: Schema.String, round: Schema.Number })

/** The `sync` service. */
export const Sync = ServiceContract.make(
  "sync",
  RpcGroup.make(
    ServiceContract.read(Rpc.make("status", { success: Status })),
    ServiceContract.read(
      Rpc.make("inspect", { payload: { key: Schema.String }, success: Schema.NullOr(RecordInfo) })
    ),
    // write: it makes the node send (and, through the peers' answers, write).
    ServiceContract.write(
      Rpc.make("syncNow", {
        payload: Schema.NullishOr(Schema.Struct({ peer: Schema.optional(Schema.String) })),
        success: Schema.Struct({ peers: Schema.Array(Schema.String) })
      })
    )
  )
)
