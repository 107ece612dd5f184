/**
 * The analytics service contract: what callers import (schemas only, no implementation),
 * e.g. `Services.client(Analytics)` from another plugin.
 */
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
// The SDK builds contracts from @effect/rpc's Rpc and RpcGroup and does not re-export them.
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Schema from "effect/Schema"

/** How many events, and how fast they came recently. */
export const Counter = Schema.Struct({
  /** Events counted since `since` (restored across restarts). */
  count: Schema.Number,
  /** Events per second over the recent window (in memory: starts from zero after a restart). */
  rate: Schema.Number
})
/** @see Counter */
export type Counter = typeof Counter.Type

/** `getStats` filters; both are optional and combine with AND. */
export const StatsFilter = Schema.Struct({
  /** Only event types starting with this string, e.g. `content.` (a plain string prefix). */
  typePrefix: Schema.optional(Schema.String),
  /** Only events from this source: a plugin id or `core`. */
  source: Schema.optional(Schema.String)
})
/** @see StatsFilter */
export type StatsFilter = typeof StatsFilter.Type

/** What `getStats` returns. */
export const Stats = Schema.Struct({
  /** When counting started, in milliseconds since the epoch (kept across restarts). */
  since: Schema.Number,
  /** Events matching the filter; without a filter this includes `other`. */
  total: Schema.Number,
  /** Events per second matching the filter over the last `windowSeconds` (or since start, if shorter). */
  rate: Schema.Number,
  windowSeconds: Schema.Number,
  /** Per event type. */
  types: Schema.Record({ key: Schema.String, value: Counter }),
  /** Per source (plugin id or `core`). */
  sources: Schema.Record({ key: Schema.String, value: Counter }),
  /**
   * Events that arrived after `maxKeys` distinct (type, source) pairs were tracked, so their type
   * and source are not known: never filtered, and not part of `types` or `sources`.
   */
  other: Counter,
  /** How many distinct (type, source) pairs are tracked, and the configured bound. */
  keys: Schema.Number,
  maxKeys: Schema.Number
})
/** @see Stats */
export type Stats = typeof Stats.Type

/** The `analytics` service on the mesh. */
export const Analytics = ServiceContract.make(
  "analytics",
  RpcGroup.make(
    ServiceContract.read(
      // No payload means no filter (`blackhole call analytics getStats` sends none). Nullish: an
      // absent payload reaches a subprocess plugin as null but an in-process one as undefined.
      Rpc.make("getStats", { payload: Schema.NullishOr(StatsFilter), success: Stats })
    )
  )
)
