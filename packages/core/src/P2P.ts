/**
 * Peer connections between nodes, on js-libp2p (TCP or in-memory, noise, yamux, identify, ping).
 * The libp2p peer identity is the node's Identity key, so `peerId` is the node ID. Blackhole
 * protocols are `/blackhole/<name>/<version>`; their messages travel length-prefixed in a small
 * versioned envelope with a size cap, and a peer that sends an oversize or undecodable one is
 * disconnected. Connections and disconnections are published on the EventBus as
 * `p2p.peer.connected` / `p2p.peer.disconnected` (source `p2p`, data `{ peerId }`).
 *
 * libp2p 3 calls `Promise.withResolvers`, which Node 20 lacks: this module installs a guarded
 * polyfill (only when missing) and loads libp2p with a dynamic `import()` after it.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Metric from "effect/Metric"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type { EventBus } from "./EventBus.js"
import type { Identity } from "./Identity.js"
import * as internal from "./internal/p2p.js"
import { P2PError } from "./internal/p2pError.js"
import * as wire from "./internal/p2pWire.js"

export { P2PError }

/** The layer's settings; every field has a default suitable for a single local node. */
export interface Config {
  /**
   * Multiaddrs to listen on. Default `["/ip4/127.0.0.1/tcp/0"]` (loopback, any free port) for
   * `tcp`, and a fresh `/memory/<uuid>` for `memory`. Use `/ip4/0.0.0.0/tcp/<port>` to accept
   * peers from other machines.
   */
  readonly listen?: ReadonlyArray<string>
  /**
   * Multiaddrs dialled at start, in the background: a failed dial is logged and retried with
   * exponential backoff (capped at 30 s), and a lost connection is dialled again.
   */
  readonly bootstrap?: ReadonlyArray<string>
  /** Upper bound on open connections, inbound and outbound together; default libp2p's (300). */
  readonly maxConnections?: number
  /**
   * Largest message payload accepted or sent, in bytes; default 1 MiB. A peer announcing a bigger
   * one is disconnected before anything of it is buffered.
   */
  readonly maxMessageBytes?: number
  /** `tcp` (default) for real networks; `memory` connects nodes of the same process, for tests. */
  readonly transport?: "tcp" | "memory"
}

/** A connected peer as this node sees it. */
export interface PeerInfo {
  readonly peerId: string
  /**
   * Where it can be dialled: what it advertises over identify, plus the address we dialled it
   * at; each ends in `/p2p/<peerId>`.
   */
  readonly addresses: ReadonlyArray<string>
  /** Protocols it supports (learned over identify), sorted. */
  readonly protocols: ReadonlyArray<string>
}

/** A peer's first connection opened, or its last one closed. */
export interface PeerEvent {
  readonly type: "connected" | "disconnected"
  readonly peerId: string
}

/**
 * What a registered protocol does with its traffic. Messages from one sender stream are handled
 * one at a time, in order; while `onMessage` runs, further bytes from that stream wait in bounded
 * buffers and the sender is slowed down (yamux flow control), so a slow handler costs memory
 * proportional to the stream count, never to the sender's rate. A failing or dying handler is
 * logged and counted as `dropped`; it does not affect the stream.
 */
export interface ProtocolHandler {
  readonly onMessage: (peerId: string, message: Uint8Array) => Effect.Effect<void, unknown>
  /** A connected peer was found to support the protocol (at identify, or when it is registered). */
  readonly onPeerConnected?: (peerId: string) => Effect.Effect<void, unknown>
  /** That peer disconnected or stopped supporting the protocol. */
  readonly onPeerDisconnected?: (peerId: string) => Effect.Effect<void, unknown>
}

/** A Blackhole protocol: its full id (`/blackhole/<name>/<version>`), or its name and version. */
export type ProtocolRef = string | { readonly name: string; readonly version: string }

/** Traffic of one protocol since the layer was built; bytes are payload bytes. */
export interface ProtocolStats {
  readonly messagesIn: number
  readonly messagesOut: number
  readonly bytesIn: number
  readonly bytesOut: number
  /** Frames rejected as oversize or undecodable (each one disconnected its sender). */
  readonly badMessages: number
  /** Messages received whose handler failed, died or was interrupted. */
  readonly dropped: number
}

/** Node-wide counters since the layer was built. */
export interface Stats {
  /** Peers with at least one open connection, now. */
  readonly peers: number
  /** By protocol id: protocols registered here or sent to. */
  readonly protocols: Readonly<Record<string, ProtocolStats>>
  readonly badMessages: { readonly oversize: number; readonly undecodable: number }
  readonly dropped: number
  /** Disconnections this node made because a peer sent a bad message. */
  readonly misbehavingPeersDisconnected: number
}

/** This node's libp2p host. */
export class P2P extends Context.Tag("@blackhole/core/P2P")<P2P, P2P.Service>() {}

/** Types belonging to the {@link P2P} tag. */
export declare namespace P2P {
  /** What the P2P service offers. */
  export interface Service {
    /** The libp2p PeerId string: equal to Identity's `nodeId`. */
    readonly peerId: string
    /** The addresses actually bound (port 0 resolved), each ending in `/p2p/<peerId>`. */
    readonly listenAddresses: Effect.Effect<ReadonlyArray<string>>
    /** Peers with at least one open connection. */
    readonly peers: Effect.Effect<ReadonlyArray<PeerInfo>>
    /** Protocol ids registered on this node through `registerProtocol`, sorted. */
    readonly protocols: Effect.Effect<ReadonlyArray<string>>
    /** Connects (or reuses a connection) and returns the remote PeerId. */
    readonly dial: (multiaddr: string) => Effect.Effect<string, P2PError>
    /** Closes every connection to the peer; succeeds when there was none. */
    readonly hangUp: (peerId: string) => Effect.Effect<void, P2PError>
    /**
     * Handles `/blackhole/<name>/<version>` until the Scope closes; then the protocol is
     * unregistered (peers learn it through identify push) and its open streams are reset.
     * Returns the protocol id. Fails with `InvalidProtocol` or `ProtocolTaken`.
     */
    readonly registerProtocol: (
      name: string,
      version: string,
      handler: ProtocolHandler
    ) => Effect.Effect<string, P2PError, Scope.Scope>
    /**
     * Sends one message on the protocol, over a stream to the peer that is opened on first use
     * and reused (dialling the peer if needed and its address is known). Completes once the frame
     * is handed to the stream; while the peer applies backpressure it waits rather than buffer.
     * Delivery is at most once: there is no acknowledgement.
     */
    readonly send: (
      peerId: string,
      protocol: ProtocolRef,
      message: Uint8Array
    ) => Effect.Effect<void, P2PError>
    /**
     * Peer connections and disconnections, subscribed when the effect runs, until the Scope
     * closes. Each subscriber has a bounded buffer (256) that drops its oldest event when full.
     */
    readonly peerEvents: Effect.Effect<Stream.Stream<PeerEvent>, never, Scope.Scope>
    readonly stats: Effect.Effect<Stats>
  }
}

/** `/blackhole/<name>/<version>`, or an `InvalidProtocol` error naming the bad part. */
export const protocolId: (name: string, version: string) => Effect.Effect<string, P2PError> = (
  name,
  version
) => wire.protocolId(name, version)

/** Gauge of peers with at least one open connection, over every P2P node of the process. */
export const peersConnected: Metric.Metric.Gauge<number> = internal.peersConnected

/** Counter of Blackhole protocol messages, tagged `protocol` and `direction` (`in` | `out`). */
export const messagesTotal: Metric.Metric.Counter<number> = internal.messagesTotal

/** Counter of Blackhole protocol payload bytes, tagged `direction` (`in` | `out`). */
export const bytesTotal: Metric.Metric.Counter<number> = internal.bytesTotal

/** Counter of rejected frames, tagged `protocol` and `reason` (`oversize` | `undecodable`). */
export const badMessagesTotal: Metric.Metric.Counter<number> = internal.badMessagesTotal

/** Starts a libp2p node for the Scope's lifetime and stops it when the Scope closes. */
export const make: (
  config?: Config
) => Effect.Effect<P2P.Service, P2PError, Scope.Scope | Identity | EventBus> = internal.make

/** The node's P2P host, on TCP by default; requires the node's Identity (its key) and EventBus. */
export const layer = (config?: Config): Layer.Layer<P2P, P2PError, Identity | EventBus> =>
  Layer.scoped(P2P, make(config))

/** {@link layer} on the in-memory transport (`/memory/<name>` addresses): many nodes, one process. */
export const layerMemory = (
  config?: Omit<Config, "transport">
): Layer.Layer<P2P, P2PError, Identity | EventBus> => layer({ ...config, transport: "memory" })
