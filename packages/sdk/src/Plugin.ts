/**
 * Plugin definitions. A definition is the manifest, the config schema and a
 * program: an Effect that needs only context services, sets the plugin up,
 * and returns the handlers its type requires. Its Scope finalizers are its
 * Stop. The same definition runs compiled-in or in a subprocess, unchanged.
 */
import type * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { Events } from "./Events.js"
import type { Hooks } from "./Hooks.js"
import type * as HttpEndpoint from "./HttpEndpoint.js"
import type { NodeInfo } from "./NodeInfo.js"
import type { ConfigSchema, PluginConfig } from "./PluginConfig.js"
import type { PluginLogger } from "./PluginLogger.js"
import type { PluginManifestEncoded } from "./PluginManifest.js"
import type { PluginStorage } from "./PluginStorage.js"
import type * as ServiceContract from "./ServiceContract.js"
import type { Services } from "./Services.js"

/** The four kinds of plugin of the original design. */
export type PluginType = "service" | "protocol" | "storage" | "integration"

/** Everything a plugin program may require: the context services, and a Scope. */
export type ContextServices =
  | PluginLogger
  | PluginConfig
  | Events
  | PluginStorage
  | Services
  | Hooks
  | NodeInfo

/** A plugin's own view of its health. */
export const HealthStatus = Schema.Struct({
  status: Schema.Literal("healthy", "degraded", "unhealthy"),
  details: Schema.optional(Schema.String)
})
/** @see HealthStatus */
export type HealthStatus = typeof HealthStatus.Type

/** Handlers every plugin type may return. */
export interface CommonHandlers {
  /** Checked by the supervisor; absent means healthy while running. */
  readonly health?: Effect.Effect<HealthStatus>
  /** Services this plugin registers on the mesh; each name must be listed in the manifest's `services`. */
  readonly services?: ReadonlyArray<ServiceContract.Implementation>
  /** HTTP routes the node mounts under `/api/v1/<path>` (needs the `http:serve` grant). */
  readonly http?: HttpEndpoint.Endpoints
}

/** A service plugin must expose at least one service on the mesh. */
export interface ServiceHandlers extends CommonHandlers {
  readonly services: readonly [ServiceContract.Implementation, ...Array<ServiceContract.Implementation>]
}

/** Storage usage in bytes; `totalBytes` null when unbounded. */
export const Capacity = Schema.Struct({ usedBytes: Schema.Number, totalBytes: Schema.NullOr(Schema.Number) })
/** @see Capacity */
export type Capacity = typeof Capacity.Type

/** What a storage backend plugin implements: the full storage contract of the original design. */
export interface StorageBackend {
  readonly store: (key: string, value: Uint8Array) => Effect.Effect<void, StorageFailure>
  readonly retrieve: (key: string) => Effect.Effect<Uint8Array | undefined, StorageFailure>
  readonly delete: (key: string) => Effect.Effect<boolean, StorageFailure>
  readonly list: (prefix: string) => Effect.Effect<ReadonlyArray<string>, StorageFailure>
  readonly capacity: Effect.Effect<Capacity, StorageFailure>
}

/** The one error a storage backend reports: what failed and why. */
export class StorageFailure extends Schema.TaggedError<StorageFailure>()("StorageFailure", {
  operation: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `storage ${this.operation} failed: ${this.reason}`
  }
}

/** A storage plugin returns its backend. */
export interface StorageHandlers extends CommonHandlers {
  readonly storage: StorageBackend
}

/** A peer's id (libp2p PeerId string). */
export type PeerId = string

/** What a protocol plugin implements: messages and peer lifecycle for `/blackhole/<name>/<version>`. */
export interface Protocol {
  readonly name: string
  readonly version: string
  readonly handleMessage: (peer: PeerId, message: Uint8Array) => Effect.Effect<void>
  readonly onPeerConnected?: (peer: PeerId) => Effect.Effect<void>
  readonly onPeerDisconnected?: (peer: PeerId) => Effect.Effect<void>
}

/** A protocol plugin returns its protocol. */
export interface ProtocolHandlers extends CommonHandlers {
  readonly protocol: Protocol
}

/** What an integration plugin implements: a sync with its external system, callable on demand. */
export interface Integration {
  /** A short name of the external system, e.g. `webhook`. */
  readonly kind: string
  readonly sync: Effect.Effect<void>
}

/** An integration plugin returns its integration. */
export interface IntegrationHandlers extends CommonHandlers {
  readonly integration: Integration
}

/** The handlers each plugin type must return. */
export interface HandlersByType {
  readonly service: ServiceHandlers
  readonly protocol: ProtocolHandlers
  readonly storage: StorageHandlers
  readonly integration: IntegrationHandlers
}

/** The program of a plugin of type `T`. Requirements beyond the context services do not compile. */
export type Program<T extends PluginType, E = unknown> = Effect.Effect<
  HandlersByType[T],
  E,
  ContextServices | Scope.Scope
>

/** A plugin definition: what a plugin module's default export is. */
export interface PluginDefinition<T extends PluginType = PluginType, A = unknown, I = unknown, E = unknown> {
  readonly _tag: "PluginDefinition"
  readonly type: T
  /** The manifest, as in `plugin.json` (the host decodes and checks it). */
  readonly manifest: PluginManifestEncoded & { readonly type: T }
  readonly config: ConfigSchema<A, I>
  readonly program: Program<T, E>
}

/** Any plugin definition. */
// biome-ignore lint/suspicious/noExplicitAny: config type parameters are invariant
export type Any = PluginDefinition<PluginType, any, any, any>

const make =
  <T extends PluginType>(type: T) =>
  <A, I, E>(definition: {
    readonly manifest: PluginManifestEncoded & { readonly type: T }
    readonly config: ConfigSchema<A, I>
    readonly program: Program<T, E>
  }): PluginDefinition<T, A, I, E> => ({ _tag: "PluginDefinition", type, ...definition })

/** Defines a service plugin: its program returns at least one service implementation. */
export const service = make("service")
/** Defines a storage plugin: its program returns a full storage backend. */
export const storage = make("storage")
/** Defines a protocol plugin: its program returns its protocol handlers. */
export const protocol = make("protocol")
/** Defines an integration plugin: its program returns its sync. */
export const integration = make("integration")

/** Whether a module's default export looks like a plugin definition. */
export const isPluginDefinition = (u: unknown): u is Any =>
  typeof u === "object" && u !== null && (u as { _tag?: unknown })._tag === "PluginDefinition"
