/**
 * The node's publish/subscribe bus on dotted event types (`content.created`, `content.*`, `*`).
 * The host stamps `source`; every subscriber has its own bounded buffer with an explicit
 * overflow policy, and every drop is counted, so a slow subscriber costs only itself.
 */
import type { Event } from "@blackhole/sdk/Event"
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Metric from "effect/Metric"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as internal from "./internal/eventBus.js"

/** What a full buffer does: `dropping` drops the new event, `sliding` drops the oldest buffered one. */
export type OverflowPolicy = "dropping" | "sliding"

/** Per-subscription settings; the sandbox fills these from the plugin's limits. */
export interface SubscribeOptions {
  /** Buffer size for this subscriber; default from the layer options (1024). */
  readonly capacity?: number
  /** Default from the layer options (`dropping`). */
  readonly overflow?: OverflowPolicy
  /** Who subscribes (plugin id or "core"), for metrics and logs. Default "core". */
  readonly subscriber?: string
  /**
   * Memory accounting for buffered payloads (size: `JSON.stringify(data).length`): `reserve` is
   * called synchronously on publish and returning false drops the event (counted as "quota");
   * `release` is called when the event leaves the buffer (delivered, evicted or unsubscribed).
   * A payload that cannot be serialised (a cycle, a BigInt) cannot be accounted: it is dropped.
   */
  readonly quota?: {
    readonly reserve: (bytes: number) => boolean
    readonly release: (bytes: number) => void
  }
}

/** A live subscription: its events, and how many were dropped for it so far. */
export interface Subscription {
  /** Ends when the subscription's Scope closes; events still buffered then are discarded. */
  readonly stream: Stream.Stream<Event>
  readonly dropped: Effect.Effect<number>
}

/** Bus-wide counters since the layer was built. */
export interface Stats {
  readonly published: number
  /** Events taken from subscribers' buffers by their streams (one per event per subscriber). */
  readonly delivered: number
  readonly dropped: number
  /** Current number of subscriptions. */
  readonly subscribers: number
}

/** The node's event bus; plugins reach it only through the sandbox's filtered `Events`. */
export class EventBus extends Context.Tag("@blackhole/core/EventBus")<EventBus, EventBus.Service>() {}

/** Types belonging to the {@link EventBus} tag. */
export declare namespace EventBus {
  /** What the EventBus service offers. */
  export interface Service {
    /**
     * Stamps a unique id, the timestamp and the given `source`, and buffers the event for every
     * matching subscriber; never blocks on a slow one. The type is not checked here (this is the
     * hot path): callers that take types from outside validate them first with `validateType`.
     */
    readonly publish: (input: {
      readonly type: string
      readonly source: string
      readonly data?: unknown
    }) => Effect.Effect<Event>
    /**
     * Live when the effect completes; removed (its buffer discarded, its stream ended) when the
     * Scope closes. The pattern is assumed valid (`EventPattern.validate`); an invalid one
     * matches nothing useful. Dies on a capacity that is not a positive integer.
     */
    readonly subscribe: (
      pattern: string,
      options?: SubscribeOptions
    ) => Effect.Effect<Subscription, never, Scope.Scope>
    readonly stats: Effect.Effect<Stats>
  }
}

/** Why `type` cannot be published (not a concrete dotted type), or `undefined` when it can. */
export const validateType: (type: string) => string | undefined = internal.validateType

/** Counter of published events, tagged `source`. */
export const publishedTotal: Metric.Metric.Counter<number> = internal.publishedTotal

/** Counter of events handed to subscribers' streams, tagged `subscriber`. */
export const deliveredTotal: Metric.Metric.Counter<number> = internal.deliveredTotal

/** Counter of dropped events, tagged `subscriber` and `reason` (`overflow` | `quota`). */
export const droppedTotal: Metric.Metric.Counter<number> = internal.droppedTotal

/** Builds a bus; the options are the defaults for subscriptions that do not set their own. */
export const make: (options?: {
  readonly capacity?: number
  readonly overflow?: OverflowPolicy
}) => Effect.Effect<EventBus.Service> = internal.make

/** The in-memory bus (there is no other kind: events are not persisted). */
export const layer = (options?: {
  readonly capacity?: number
  readonly overflow?: OverflowPolicy
}): Layer.Layer<EventBus> => Layer.effect(EventBus, make(options))
