/**
 * The core services on the mesh: `identity`, `storage` and `node`, served
 * with the contracts of `@blackhole/sdk/CoreServices` so plugins (in process
 * or not) and the operator reach them like any other service.
 */
import * as CoreServices from "@blackhole/sdk/CoreServices"
import type { NodeInfo } from "@blackhole/sdk/NodeInfo"
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { Identity } from "./Identity.js"
import { PluginManager } from "./PluginManager.js"
import * as Principal from "./Principal.js"
import { ServiceRegistry } from "./ServiceRegistry.js"
import { Storage } from "./Storage.js"

/** Registers the core services on the mesh until the Scope closes. */
export const register = (
  nodeInfo: Omit<NodeInfo["Type"], "nodeId">
): Effect.Effect<void, never, ServiceRegistry | Identity | Storage | PluginManager | Scope.Scope> =>
  Effect.gen(function* () {
    const registry = yield* ServiceRegistry
    const identity = yield* Identity
    const storage = yield* Storage
    const plugins = yield* PluginManager
    const startedAt = Date.now()

    const caller = Effect.map(FiberRef.get(Principal.current), Principal.name)
    const serve = (implementation: ServiceContract.Implementation) =>
      // Core names are reserved for the core, so this cannot be taken: a failure is a bug.
      registry
        .register(implementation.contract, ServiceContract.toDispatch(implementation, "core"), "core")
        .pipe(Effect.orDie)

    yield* serve(
      ServiceContract.implement(CoreServices.Identity, {
        info: () => Effect.succeed({ nodeId: identity.nodeId, publicKey: identity.publicKey }),
        verify: ({ data, signature, publicKey }) => identity.verify(data, signature, publicKey),
        sign: ({ data }) => identity.sign(data)
      })
    )

    yield* serve(
      ServiceContract.implement(CoreServices.Storage, {
        retrieve: ({ namespace, key }) => storage.retrieve(namespace, key).pipe(Effect.map(Option.getOrNull)),
        list: ({ namespace, prefix }) => storage.list(namespace, prefix),
        capacity: () => storage.capacity,
        snapshot: ({ namespacePrefix }) =>
          Stream.runCollect(storage.snapshot(namespacePrefix)).pipe(Effect.map(Chunk.toReadonlyArray)),
        // Writes through the mesh are attributed to their caller; hooks see and may veto them.
        store: ({ namespace, key, value }) =>
          Effect.flatMap(caller, (principal) => storage.store(principal, namespace, key, value)),
        delete: ({ namespace, key }) =>
          Effect.flatMap(caller, (principal) => storage.delete(principal, namespace, key)),
        batch: ({ ops }) => Effect.flatMap(caller, (principal) => storage.batch(principal, ops))
      })
    )

    yield* serve(
      ServiceContract.implement(CoreServices.Node, {
        info: () =>
          Effect.sync(() => ({
            nodeId: identity.nodeId,
            version: nodeInfo.version,
            environment: nodeInfo.environment,
            uptimeMillis: Date.now() - startedAt
          })),
        plugins: () =>
          Effect.map(plugins.list, (list) =>
            list.map(({ id, name, version, type, loader, state, restarts }) => ({
              id,
              name,
              version,
              type,
              loader,
              state,
              restarts
            }))
          )
      })
    )
  })

/** Registers the core services on the mesh for the node's lifetime. */
export const layer = (
  nodeInfo: Omit<NodeInfo["Type"], "nodeId">
): Layer.Layer<never, never, ServiceRegistry | Identity | Storage | PluginManager> =>
  Layer.scopedDiscard(register(nodeInfo))
