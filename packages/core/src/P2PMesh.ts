/**
 * P2P on the mesh: the core `p2p` service (peers, and `send` for protocol
 * plugins) and the attachment that registers a protocol plugin's
 * `/blackhole/<name>/<version>` with libp2p while the plugin runs, in process
 * or in a subprocess alike. Inbound messages pass the `protocol.before.message`
 * hooks first; a plugin sends only on protocols it holds `p2p:protocol:<name>` for.
 */
import * as CoreServices from "@blackhole/sdk/CoreServices"
import { PermissionDenied, PluginFailure } from "@blackhole/sdk/Errors"
import * as Permission from "@blackhole/sdk/Permission"
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import type * as Scope from "effect/Scope"
import type { HookRegistry } from "./HookRegistry.js"
import type { P2P } from "./P2P.js"
import type { Attachment } from "./PluginManager.js"
import * as Principal from "./Principal.js"
import type { ServiceRegistry } from "./ServiceRegistry.js"

/** The protocols plugins registered on this node, by name. */
interface Registered {
  readonly version: string
  readonly owner: string
}

/** The `p2p` service and the protocol attachment over one libp2p node. */
export const make = (p2p: P2P["Type"], hooks: HookRegistry["Type"]) => {
  const protocols = new Map<string, Registered>()

  const attachment: Attachment = ({ manifest, granted, handlers }) =>
    Effect.gen(function* () {
      const protocol = handlers.protocol
      if (protocol === undefined) return
      if (!Permission.allows(granted, `p2p:protocol:${protocol.name}`)) {
        return yield* new PluginFailure({
          pluginId: manifest.id,
          reason: `it serves the P2P protocol "${protocol.name}" but holds no "p2p:protocol:${protocol.name}" grant: request it in plugin.json and grant it under plugins.grants in the node config`
        })
      }
      const id = `/blackhole/${protocol.name}/${protocol.version}`
      yield* p2p
        .registerProtocol(protocol.name, protocol.version, {
          onMessage: (peer, message) =>
            hooks.run("protocol.before.message", { protocol: id, peer, size: message.byteLength }).pipe(
              Effect.zipRight(protocol.handleMessage(peer, message)),
              Effect.catchTag("HookVetoed", (veto) =>
                Effect.logDebug(`message from ${peer} on ${id} vetoed: ${veto.message}`)
              )
            ),
          ...(protocol.onPeerConnected === undefined ? {} : { onPeerConnected: protocol.onPeerConnected }),
          ...(protocol.onPeerDisconnected === undefined
            ? {}
            : { onPeerDisconnected: protocol.onPeerDisconnected })
        })
        .pipe(Effect.mapError((error) => new PluginFailure({ pluginId: manifest.id, reason: error.message })))
      const entry = { version: protocol.version, owner: manifest.id }
      protocols.set(protocol.name, entry)
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          if (protocols.get(protocol.name) === entry) protocols.delete(protocol.name)
        })
      )
    })

  const implementation = ServiceContract.implement(CoreServices.P2P, {
    info: () =>
      Effect.all({
        peerId: Effect.succeed(p2p.peerId),
        listen: p2p.listenAddresses,
        peers: p2p.peers
      }),
    send: ({ protocol, peer, message }) =>
      Effect.gen(function* () {
        const principal = yield* FiberRef.get(Principal.current)
        const permission = `p2p:protocol:${protocol}`
        if (!Principal.allows(principal, permission)) {
          return yield* new PermissionDenied({ permission, principal: Principal.name(principal) })
        }
        const registered = protocols.get(protocol)
        if (registered === undefined) {
          return yield* new CoreServices.PeerError({
            peer,
            reason: `no plugin serves the protocol "${protocol}" on this node`
          })
        }
        yield* p2p
          .send(peer, { name: protocol, version: registered.version }, message)
          .pipe(Effect.mapError((error) => new CoreServices.PeerError({ peer, reason: error.message })))
      })
  })

  /** Serves `p2p` on the mesh until the Scope closes. */
  const serve = (registry: ServiceRegistry["Type"]): Effect.Effect<void, never, Scope.Scope> =>
    registry
      .register(implementation.contract, ServiceContract.toDispatch(implementation, "core"), "core")
      .pipe(Effect.orDie)

  return { attachment, serve }
}
