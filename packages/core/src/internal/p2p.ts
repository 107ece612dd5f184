// First, as a side-effect import (which import sorting leaves in place): libp2p and its helpers
// call Promise.withResolvers, which Node 20 lacks. libp2p itself is loaded with a dynamic
// import() in `loadLibp2p`, after calling the installer again, so no import order can defeat it.
import "./promiseWithResolvers.js"
import { randomUUID } from "node:crypto"
import type { Connection, Libp2p, PeerId, Stream, Topology } from "@libp2p/interface"
import { peerIdFromString } from "@libp2p/peer-id"
import type { Multiaddr } from "@multiformats/multiaddr"
import { multiaddr } from "@multiformats/multiaddr"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Metric from "effect/Metric"
import * as ParseResult from "effect/ParseResult"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Stream_ from "effect/Stream"
import { EventBus } from "../EventBus.js"
import { Identity } from "../Identity.js"
import type { Config, P2P, PeerEvent, PeerInfo, ProtocolHandler, ProtocolRef, Stats } from "../P2P.js"
import { describe, P2PError } from "./p2pError.js"
import {
  decodeEnvelope,
  ENVELOPE_OVERHEAD,
  encodeFrame,
  HEADER_BYTES,
  parseProtocolId,
  protocolId,
  readLength,
  StreamReader
} from "./p2pWire.js"
import { installPromiseWithResolvers } from "./promiseWithResolvers.js"

/** @internal */
export const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024

/** @internal */
export const DEFAULT_TCP_LISTEN: ReadonlyArray<string> = ["/ip4/127.0.0.1/tcp/0"]

/** @internal */
export const peersConnected = Metric.gauge("p2p_peers_connected", {
  description: "Peers with at least one open connection, over every P2P node of the process"
})

/** @internal */
export const messagesTotal = Metric.counter("p2p_messages_total", {
  description: "Blackhole protocol messages sent and received, by protocol and direction (in | out)",
  incremental: true
})

/** @internal */
export const bytesTotal = Metric.counter("p2p_bytes_total", {
  description: "Payload bytes of Blackhole protocol messages sent and received, by direction (in | out)",
  incremental: true
})

/** @internal */
export const badMessagesTotal = Metric.counter("p2p_bad_messages_total", {
  description:
    "Frames rejected (and their senders disconnected), by protocol and reason (oversize | undecodable)",
  incremental: true
})

const bytesIn = Metric.tagged(bytesTotal, "direction", "in")
const bytesOut = Metric.tagged(bytesTotal, "direction", "out")

/** Each peer-event subscriber's buffer; the oldest event goes when it is full. */
const PEER_EVENTS_CAPACITY = 256

/**
 * A stream's bytes buffered by its reader before it pauses the stream (more only while a single
 * frame needs it). Paused, yamux holds at most its receive window, capped below.
 */
const READ_HIGH_WATER = 64 * 1024

/**
 * yamux's per-stream receive window grows up to this. It bounds what a paused stream can still
 * receive, and stays under yamux's read-buffer limit (4 MiB) past which a paused stream is reset
 * (yamux's own default, 16 MiB, would reset streams whose consumer is merely slow).
 */
const MAX_STREAM_WINDOW = 2 * 1024 * 1024

/** Largest body the 4-byte length prefix can announce. */
const MAX_FRAME_BODY = 0xffff_ffff

/** Backoff between failed bootstrap dials: 0.5 s doubling, at most 30 s, jittered. */
const BOOTSTRAP_RETRY = Schedule.exponential("500 millis").pipe(
  Schedule.union(Schedule.spaced("30 seconds")),
  Schedule.jittered
)

/** How long stopping the libp2p node may take before the layer gives up waiting. */
const STOP_TIMEOUT = "10 seconds"

interface Settings {
  readonly transport: "tcp" | "memory"
  readonly listen: ReadonlyArray<string>
  readonly bootstrap: ReadonlyArray<string>
  readonly maxConnections: number | undefined
  readonly maxMessageBytes: number
}

const invalidConfig = (message: string) => new P2PError({ reason: "InvalidConfig", message })

const parseAddress = (address: string): Either.Either<Multiaddr, P2PError> =>
  Either.try({
    try: () => multiaddr(address),
    catch: (cause) =>
      new P2PError({
        reason: "InvalidAddress",
        message: `${JSON.stringify(address)} is not a multiaddr (${describe(cause)})`
      })
  })

const parsePeerId = (peerId: string): Either.Either<PeerId, P2PError> =>
  Either.try({
    try: () => peerIdFromString(peerId),
    catch: (cause) =>
      new P2PError({
        reason: "InvalidPeerId",
        message: `${JSON.stringify(peerId)} is not a peer ID (${describe(cause)})`
      })
  })

const isPositiveInteger = (value: number) => Number.isSafeInteger(value) && value > 0

const settingsOf = (config: Config): Effect.Effect<Settings, P2PError> =>
  Effect.gen(function* () {
    const transport = config.transport ?? "tcp"
    const maxMessageBytes = config.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES
    if (!isPositiveInteger(maxMessageBytes) || maxMessageBytes > MAX_FRAME_BODY - ENVELOPE_OVERHEAD) {
      return yield* invalidConfig(
        `maxMessageBytes must be an integer from 1 to ${MAX_FRAME_BODY - ENVELOPE_OVERHEAD}, got ${maxMessageBytes}`
      )
    }
    if (config.maxConnections !== undefined && !isPositiveInteger(config.maxConnections)) {
      return yield* invalidConfig(`maxConnections must be a positive integer, got ${config.maxConnections}`)
    }
    // Memory listener names are process-wide: a fresh one per node keeps tests independent.
    const listen =
      config.listen ?? (transport === "memory" ? [`/memory/${randomUUID()}`] : DEFAULT_TCP_LISTEN)
    const bootstrap = config.bootstrap ?? []
    // Parse up front so a typo fails the layer with the address named, not a dial much later.
    for (const address of [...listen, ...bootstrap]) {
      yield* parseAddress(address)
    }
    return { transport, listen, bootstrap, maxConnections: config.maxConnections, maxMessageBytes }
  })

/** Loads libp2p and the modules the transport needs, after making sure the polyfill is in place. */
const loadLibp2p = (settings: Settings, privateKey: Identity.Service["privateKey"]) =>
  Effect.tryPromise({
    try: async (): Promise<Libp2p> => {
      installPromiseWithResolvers()
      const [{ createLibp2p }, { noise }, { yamux }, { identify, identifyPush }, { ping }, transport] =
        await Promise.all([
          import("libp2p"),
          import("@chainsafe/libp2p-noise"),
          import("@chainsafe/libp2p-yamux"),
          import("@libp2p/identify"),
          import("@libp2p/ping"),
          settings.transport === "memory"
            ? import("@libp2p/memory").then((module) => module.memory())
            : import("@libp2p/tcp").then((module) => module.tcp())
        ])
      return createLibp2p({
        // Started by the caller once its listeners are attached, so no connection goes unseen.
        start: false,
        privateKey,
        addresses: { listen: [...settings.listen] },
        transports: [transport],
        connectionEncrypters: [noise()],
        streamMuxers: [yamux({ streamOptions: { maxStreamWindowSize: MAX_STREAM_WINDOW } })],
        services: { identify: identify(), identifyPush: identifyPush(), ping: ping() },
        ...(settings.maxConnections === undefined
          ? {}
          : { connectionManager: { maxConnections: settings.maxConnections } })
      })
    },
    catch: (cause) =>
      new P2PError({ reason: "StartFailed", message: `cannot create the libp2p node: ${describe(cause)}` })
  })

/** Multiaddrs from libp2p may or may not carry the peer; the API always does. */
const withPeer = (address: string, peerId: string): string =>
  address.includes("/p2p/") ? address : `${address}/p2p/${peerId}`

interface MutableProtocolStats {
  messagesIn: number
  messagesOut: number
  bytesIn: number
  bytesOut: number
  badMessages: number
  dropped: number
}

/** Metrics and counters of one protocol, built once so the per-message path allocates nothing. */
interface ProtocolCounters {
  readonly stats: MutableProtocolStats
  readonly messagesIn: Metric.Metric.Counter<number>
  readonly messagesOut: Metric.Metric.Counter<number>
}

/** The cached outbound stream to one peer on one protocol; `lock` keeps frames whole and in order. */
interface Outbound {
  readonly lock: Effect.Semaphore
  stream: Stream | undefined
}

type PeerChange = PeerEvent | { readonly type: "stop" }

/** @internal */
export const make = (
  config: Config = {}
): Effect.Effect<P2P.Service, P2PError, Scope.Scope | Identity | EventBus> =>
  Effect.gen(function* () {
    const identity = yield* Identity
    const bus = yield* EventBus
    const settings = yield* settingsOf(config)
    const maxBody = settings.maxMessageBytes + ENVELOPE_OVERHEAD

    const counters = new Map<string, ProtocolCounters>()
    const countersFor = (id: string): ProtocolCounters => {
      let entry = counters.get(id)
      if (entry === undefined) {
        const tagged = Metric.tagged(messagesTotal, "protocol", id)
        entry = {
          stats: { messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0, badMessages: 0, dropped: 0 },
          messagesIn: Metric.tagged(tagged, "direction", "in"),
          messagesOut: Metric.tagged(tagged, "direction", "out")
        }
        counters.set(id, entry)
      }
      return entry
    }
    const totals = { oversize: 0, undecodable: 0, dropped: 0, misbehavingPeersDisconnected: 0 }
    const registered = new Set<string>()
    const outbound = new Map<string, Outbound>()

    // Peer changes: libp2p's listeners only enqueue; one fiber applies them in order (set, gauge,
    // bus, subscribers). It never blocks (the bus and the hub drop rather than wait), so the
    // queue cannot grow beyond a burst of connection events.
    const changes = yield* Queue.unbounded<PeerChange>()
    const hub = yield* PubSub.sliding<PeerEvent>(PEER_EVENTS_CAPACITY)
    const connected = new Set<string>()
    const apply = (event: PeerEvent) =>
      Effect.gen(function* () {
        if (event.type === "connected") {
          if (connected.has(event.peerId)) return
          connected.add(event.peerId)
          yield* Metric.increment(peersConnected)
        } else {
          if (!connected.delete(event.peerId)) return
          yield* Metric.incrementBy(peersConnected, -1)
          for (const key of outbound.keys()) {
            if (key.startsWith(`${event.peerId} `)) outbound.delete(key)
          }
        }
        yield* bus.publish({ type: `p2p.peer.${event.type}`, source: "p2p", data: { peerId: event.peerId } })
        yield* PubSub.publish(hub, event)
      })
    const consumeChanges = Effect.gen(function* () {
      while (true) {
        const change = yield* Queue.take(changes)
        if (change.type === "stop") break
        yield* apply(change)
      }
      // Whatever libp2p did not report before it stopped is over now.
      for (const peerId of [...connected]) {
        yield* apply({ type: "disconnected", peerId })
      }
    })
    // Acquired before the node, so released after it: the disconnections its stop causes are
    // still published.
    yield* Effect.acquireRelease(Effect.forkDaemon(consumeChanges), (fiber) =>
      Queue.offer(changes, { type: "stop" }).pipe(
        Effect.zipRight(Fiber.join(fiber).pipe(Effect.timeout("5 seconds"), Effect.ignore)),
        Effect.zipRight(Fiber.interrupt(fiber)),
        // Ends the subscribers' streams: no event will come any more.
        Effect.zipRight(PubSub.shutdown(hub))
      )
    )

    const onConnect = (event: CustomEvent<PeerId>) => {
      Queue.unsafeOffer(changes, { type: "connected", peerId: event.detail.toString() })
    }
    const onDisconnect = (event: CustomEvent<PeerId>) => {
      Queue.unsafeOffer(changes, { type: "disconnected", peerId: event.detail.toString() })
    }
    const node = yield* Effect.acquireRelease(
      loadLibp2p(settings, identity.privateKey).pipe(
        Effect.tap((node) =>
          Effect.tryPromise({
            try: async () => {
              node.addEventListener("peer:connect", onConnect)
              node.addEventListener("peer:disconnect", onDisconnect)
              try {
                await node.start()
              } catch (cause) {
                // stop() may return void (Startable), hence no `.catch` on it.
                await Promise.resolve()
                  .then(() => node.stop())
                  .catch(() => undefined)
                throw cause
              }
            },
            catch: (cause) =>
              new P2PError({
                reason: "StartFailed",
                message: `cannot start the libp2p node listening on ${settings.listen.join(", ")}: ${describe(cause)}`
              })
          })
        )
      ),
      (node) =>
        Effect.tryPromise(async () => {
          await node.stop()
        }).pipe(
          Effect.timeout(STOP_TIMEOUT),
          Effect.catchAllCause((cause) =>
            Effect.logWarning("P2P: the libp2p node did not stop cleanly", cause)
          ),
          Effect.ensuring(
            Effect.sync(() => {
              node.removeEventListener("peer:connect", onConnect)
              node.removeEventListener("peer:disconnect", onDisconnect)
            })
          )
        )
    )
    const peerId = node.peerId.toString()
    if (peerId !== identity.nodeId) {
      return yield* Effect.dieMessage(
        `P2P: libp2p peer ID ${peerId} differs from the node ID ${identity.nodeId}`
      )
    }

    /** Disconnects a peer that broke the framing; the frame is not delivered. */
    const reject = (
      id: string,
      entry: ProtocolCounters,
      peer: PeerId,
      reason: "oversize" | "undecodable",
      detail: string
    ) =>
      Effect.gen(function* () {
        entry.stats.badMessages++
        totals[reason]++
        totals.misbehavingPeersDisconnected++
        yield* Metric.increment(
          Metric.tagged(Metric.tagged(badMessagesTotal, "protocol", id), "reason", reason)
        )
        yield* Effect.logWarning(`P2P: disconnecting ${peer.toString()}: ${detail} on ${id}`)
        const error = new Error(`${reason} message on ${id}`)
        for (const connection of node.getConnections(peer)) {
          try {
            connection.abort(error)
          } catch {
            // Already closing; nothing left to do.
          }
        }
      })

    /** Reads frames from one inbound stream and hands them to the handler, one at a time. */
    const serveStream = (id: string, handler: ProtocolHandler, stream: Stream, connection: Connection) => {
      const entry = countersFor(id)
      const peer = connection.remotePeer
      const sender = peer.toString()
      const reader = new StreamReader(stream, READ_HIGH_WATER)
      const loop = Effect.gen(function* () {
        while (true) {
          const header = yield* reader.read(HEADER_BYTES)
          if (header === undefined) return "ended" as const
          const length = readLength(header)
          if (length > maxBody) {
            const announced = length - ENVELOPE_OVERHEAD
            const detail = `announced a ${announced}-byte message (limit ${settings.maxMessageBytes})`
            yield* reject(id, entry, peer, "oversize", detail)
            return "rejected" as const
          }
          const body = yield* reader.read(length)
          if (body === undefined) return "ended" as const
          const envelope = decodeEnvelope(body)
          if (Either.isLeft(envelope)) {
            const issues = ParseResult.ArrayFormatter.formatErrorSync(envelope.left)
            const detail = `sent an undecodable message (${issues.map((issue) => issue.message).join("; ")})`
            yield* reject(id, entry, peer, "undecodable", detail)
            return "rejected" as const
          }
          const payload = envelope.right.payload
          entry.stats.messagesIn++
          entry.stats.bytesIn += payload.byteLength
          yield* Metric.increment(entry.messagesIn)
          yield* Metric.incrementBy(bytesIn, payload.byteLength)
          yield* Effect.suspend(() => handler.onMessage(sender, payload)).pipe(
            Effect.catchAllCause((cause) => {
              entry.stats.dropped++
              totals.dropped++
              return Effect.logWarning(`P2P: the ${id} handler failed on a message from ${sender}`, cause)
            })
          )
        }
      })
      return loop.pipe(
        Effect.onExit((exit) =>
          Effect.suspend(() => {
            reader.dispose()
            if (Exit.isSuccess(exit) && exit.value === "ended") {
              // The sender finished: close our (unused) writing end so the stream is released.
              return Effect.tryPromise((signal) => stream.close({ signal })).pipe(
                Effect.timeout("1 second"),
                Effect.ignore
              )
            }
            // Interrupted (unregistered, node stopping) or rejected: reset it.
            return Effect.sync(() => {
              try {
                stream.abort(new Error(`${id} stream closed by ${identity.nodeId}`))
              } catch {
                // Already closed: nothing to release.
              }
            })
          })
        )
      )
    }

    const registerProtocol = (name: string, version: string, handler: ProtocolHandler) =>
      Effect.gen(function* () {
        const id = yield* protocolId(name, version)
        if (registered.has(id)) {
          return yield* new P2PError({
            reason: "ProtocolTaken",
            message: `protocol ${id} is already registered`
          })
        }
        // Everything lives in a child scope, closed at once if registration fails half-way, so a
        // failed attempt leaves nothing registered until the caller's scope ends.
        const scope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
        yield* setUpProtocol(id, handler).pipe(
          Scope.extend(scope),
          Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause)))
        )
        return id
      }).pipe(Effect.withSpan("P2P.registerProtocol", { attributes: { name, version } }))

    const setUpProtocol = (id: string, handler: ProtocolHandler) =>
      Effect.gen(function* () {
        registered.add(id)
        yield* Effect.addFinalizer(() => Effect.sync(() => registered.delete(id)))
        countersFor(id)
        // Readers and callbacks run in this set: closing the registration interrupts them.
        const run = yield* FiberSet.makeRuntime<never>()
        let open = true
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            open = false
          })
        )
        const callback = (
          peer: PeerId,
          what: string,
          f: ((peerId: string) => Effect.Effect<void, unknown>) | undefined
        ) => {
          if (f === undefined || !open) return
          const peerId = peer.toString()
          run(
            Effect.suspend(() => f(peerId)).pipe(
              Effect.catchAllCause((cause) =>
                Effect.logWarning(`P2P: the ${id} ${what} callback failed for ${peerId}`, cause)
              )
            )
          )
        }

        yield* Effect.acquireRelease(
          Effect.tryPromise({
            try: () =>
              node.handle(
                id,
                (stream, connection) => {
                  if (!open) {
                    try {
                      stream.abort(new Error(`${id} is being unregistered`))
                    } catch {
                      // Already closed.
                    }
                    return
                  }
                  run(serveStream(id, handler, stream, connection))
                },
                { runOnLimitedConnection: false }
              ),
            catch: (cause) =>
              new P2PError({ reason: "ProtocolTaken", message: `cannot register ${id}: ${describe(cause)}` })
          }),
          () =>
            Effect.tryPromise(() => node.unhandle(id)).pipe(
              Effect.catchAllCause((cause) => Effect.logDebug(`P2P: unregistering ${id} failed`, cause))
            )
        )

        if (handler.onPeerConnected === undefined && handler.onPeerDisconnected === undefined) return
        // libp2p tells a topology about peers that support the protocol, after identify (and
        // identify push); the filter makes each connection count once.
        const supporting = new Set<string>()
        const topology: Topology = {
          filter: {
            has: (peer) => supporting.has(peer.toString()),
            add: (peer) => {
              supporting.add(peer.toString())
            },
            remove: (peer) => {
              supporting.delete(peer.toString())
            }
          },
          onConnect: (peer) => callback(peer, "onPeerConnected", handler.onPeerConnected),
          onDisconnect: (peer) => callback(peer, "onPeerDisconnected", handler.onPeerDisconnected)
        }
        // register() only records the topology: a rejection would be a libp2p bug, hence a defect.
        yield* Effect.acquireRelease(
          Effect.promise(() => node.register(id, topology)),
          (topologyId) => Effect.sync(() => node.unregister(topologyId))
        )
        // Peers identified before this registration will not be reported by libp2p: catch up.
        yield* Effect.forEach(
          node.getPeers(),
          (peer) =>
            Effect.promise(() => node.peerStore.get(peer).catch(() => undefined)).pipe(
              Effect.tap((known) =>
                Effect.sync(() => {
                  if (known?.protocols.includes(id) === true && !supporting.has(peer.toString())) {
                    supporting.add(peer.toString())
                    callback(peer, "onPeerConnected", handler.onPeerConnected)
                  }
                })
              )
            ),
          { discard: true }
        )
      })

    const toProtocolId = (protocol: ProtocolRef): Either.Either<string, P2PError> =>
      typeof protocol === "string" ? parseProtocolId(protocol) : protocolId(protocol.name, protocol.version)

    const sendFailed = (message: string) => new P2PError({ reason: "SendFailed", message })

    /** The open stream of `current`, or a new one; under `current.lock`. */
    const streamOf = (current: Outbound, key: string, peer: PeerId, id: string) =>
      Effect.suspend(() => {
        const cached = current.stream
        if (cached !== undefined && cached.writeStatus === "writable") {
          return Effect.succeed(cached)
        }
        return Effect.tryPromise({
          try: (signal) => node.dialProtocol(peer, id, { signal }),
          catch: (cause) => sendFailed(`cannot open ${id} to ${peer.toString()}: ${describe(cause)}`)
        }).pipe(
          Effect.tap((stream) =>
            Effect.sync(() => {
              current.stream = stream
              stream.addEventListener(
                "close",
                () => {
                  if (current.stream === stream) current.stream = undefined
                },
                { once: true }
              )
            })
          ),
          Effect.tapError(() =>
            Effect.sync(() => {
              if (outbound.get(key) === current) outbound.delete(key)
            })
          )
        )
      })

    const send = (
      target: string,
      protocol: ProtocolRef,
      message: Uint8Array
    ): Effect.Effect<void, P2PError> =>
      Effect.gen(function* () {
        const id = yield* toProtocolId(protocol)
        const peer = yield* parsePeerId(target)
        if (message.byteLength > settings.maxMessageBytes) {
          return yield* new P2PError({
            reason: "MessageTooLarge",
            message: `a ${message.byteLength}-byte message exceeds maxMessageBytes (${settings.maxMessageBytes}) on ${id}`
          })
        }
        const frame = encodeFrame(message)
        const key = `${target} ${id}`
        while (true) {
          let current = outbound.get(key)
          if (current === undefined) {
            current = { lock: Effect.unsafeMakeSemaphore(1), stream: undefined }
            outbound.set(key, current)
          }
          const entry = current
          const sent = yield* entry.lock.withPermits(1)(
            Effect.gen(function* () {
              // Replaced while we waited (the peer went away, or an open failed): start over.
              if (outbound.get(key) !== entry) return false
              const stream = yield* streamOf(entry, key, peer, id)
              if (stream.writableNeedsDrain) {
                // The peer is not keeping up: wait instead of queueing more in memory.
                yield* Effect.tryPromise({
                  try: (signal) => stream.onDrain({ signal }),
                  catch: (cause) => sendFailed(`the ${id} stream to ${target} closed: ${describe(cause)}`)
                })
              }
              yield* Effect.try({
                try: () => stream.send(frame),
                catch: (cause) =>
                  sendFailed(`cannot write to the ${id} stream to ${target}: ${describe(cause)}`)
              })
              return true
            })
          )
          if (sent) break
        }
        const counters = countersFor(id)
        counters.stats.messagesOut++
        counters.stats.bytesOut += message.byteLength
        yield* Metric.increment(counters.messagesOut)
        yield* Metric.incrementBy(bytesOut, message.byteLength)
      })

    const dial = (address: string) =>
      Effect.gen(function* () {
        const target = yield* parseAddress(address)
        const connection = yield* Effect.tryPromise({
          try: (signal) => node.dial(target, { signal }),
          catch: (cause) =>
            new P2PError({ reason: "DialFailed", message: `cannot dial ${address}: ${describe(cause)}` })
        })
        return connection.remotePeer.toString()
      }).pipe(Effect.withSpan("P2P.dial", { attributes: { address } }))

    const hangUp = (target: string) =>
      Effect.gen(function* () {
        const peer = yield* parsePeerId(target)
        yield* Effect.tryPromise({
          try: (signal) => node.hangUp(peer, { signal }),
          catch: (cause) =>
            new P2PError({
              reason: "HangUpFailed",
              message: `cannot hang up on ${target}: ${describe(cause)}`
            })
        })
      }).pipe(Effect.withSpan("P2P.hangUp", { attributes: { peerId: target } }))

    const describePeer = (peer: PeerId): Effect.Effect<PeerInfo> =>
      Effect.promise(() => node.peerStore.get(peer).catch(() => undefined)).pipe(
        Effect.map((known) => {
          const id = peer.toString()
          const addresses = new Set<string>()
          for (const address of known?.addresses ?? []) {
            addresses.add(withPeer(address.multiaddr.toString(), id))
          }
          for (const connection of node.getConnections(peer)) {
            // An inbound connection's remote address is an ephemeral port: not a way back.
            if (connection.direction === "outbound")
              addresses.add(withPeer(connection.remoteAddr.toString(), id))
          }
          return { peerId: id, addresses: [...addresses], protocols: [...(known?.protocols ?? [])].sort() }
        })
      )

    /** Completes when the peer has no connection left. */
    const awaitDisconnect = (peer: PeerId) =>
      Effect.suspend(() => {
        let listener: ((event: CustomEvent<PeerId>) => void) | undefined
        return Effect.async<void>((resume) => {
          listener = (event) => {
            if (event.detail.equals(peer)) resume(Effect.void)
          }
          node.addEventListener("peer:disconnect", listener)
          if (node.getConnections(peer).length === 0) resume(Effect.void)
        }).pipe(
          Effect.ensuring(
            Effect.sync(() => {
              if (listener !== undefined) node.removeEventListener("peer:disconnect", listener)
            })
          )
        )
      })

    /** Dials a bootstrap address until it answers, then again whenever that peer is lost. */
    const keepConnected = (address: string) =>
      Effect.gen(function* () {
        const remote = yield* dial(address).pipe(
          Effect.tapError((error) => Effect.logWarning(`P2P bootstrap: ${error.message}; will retry`)),
          Effect.retry(BOOTSTRAP_RETRY)
        )
        yield* Effect.logInfo(`P2P bootstrap: connected to ${remote} at ${address}`)
        yield* awaitDisconnect(peerIdFromString(remote))
        yield* Effect.logInfo(`P2P bootstrap: lost ${remote} at ${address}; dialling again`)
        // A peer that accepts and drops at once must not make this a busy loop.
        yield* Effect.sleep("1 second")
      }).pipe(Effect.forever)

    // Forked after the node was acquired, so interrupted before it stops.
    yield* Effect.forEach(settings.bootstrap, (address) => Effect.forkScoped(keepConnected(address)), {
      discard: true
    })

    const service: P2P.Service = {
      peerId,
      listenAddresses: Effect.sync(() =>
        node.getMultiaddrs().map((address) => withPeer(address.toString(), peerId))
      ),
      peers: Effect.suspend(() =>
        Effect.forEach(node.getPeers(), describePeer, { concurrency: "unbounded" })
      ),
      protocols: Effect.sync(() => [...registered].sort()),
      dial,
      hangUp,
      registerProtocol,
      send,
      peerEvents: PubSub.subscribe(hub).pipe(Effect.map((dequeue) => Stream_.fromQueue(dequeue))),
      stats: Effect.sync(
        (): Stats => ({
          peers: node.getPeers().length,
          protocols: Object.fromEntries([...counters].map(([id, entry]) => [id, { ...entry.stats }])),
          badMessages: { oversize: totals.oversize, undecodable: totals.undecodable },
          dropped: totals.dropped,
          misbehavingPeersDisconnected: totals.misbehavingPeersDisconnected
        })
      )
    }
    yield* Effect.logDebug(`P2P: ${peerId} listening on ${(yield* service.listenAddresses).join(", ")}`)
    return service
  })
