/**
 * Publish and subscribe on the node's event bus. Types are dotted
 * (`content.created`); patterns match one segment per `*`, a trailing `*`
 * one or more, and a bare `*` everything. The host stamps `source`.
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { PermissionDenied, QuotaExceeded, RateLimited } from "./Errors.js"
import type { Event } from "./Event.js"
import * as PluginLogger from "./PluginLogger.js"

/** Context service: the plugin's view of the bus (`events:publish:<type>`, `events:subscribe:<pattern>`). */
export class Events extends Context.Tag("@blackhole/sdk/Events")<
  Events,
  {
    /** Publishes `data` (any JSON value) as an event of `type`. */
    readonly publish: (
      type: string,
      data?: unknown
    ) => Effect.Effect<void, PermissionDenied | RateLimited | QuotaExceeded>
    /**
     * Subscribes; the subscription is live when this returns and ends with the
     * Scope. The buffer is bounded: on overflow the host drops and counts.
     */
    readonly subscribe: (
      pattern: string
    ) => Effect.Effect<Stream.Stream<Event>, PermissionDenied, Scope.Scope>
  }
>() {}

/** Publishes an event. */
export const publish = (type: string, data?: unknown) =>
  Effect.flatMap(Events, (events) => events.publish(type, data))

/** Subscribes to `pattern` and runs `handler` for each event in a fiber that lives as long as the Scope. */
export const on = <E, R>(
  pattern: string,
  handler: (event: Event) => Effect.Effect<void, E, R>
): Effect.Effect<void, PermissionDenied, Events | PluginLogger.PluginLogger | Scope.Scope | R> =>
  Effect.gen(function* () {
    const events = yield* Events
    const stream = yield* events.subscribe(pattern)
    yield* stream.pipe(
      Stream.runForEach((event) =>
        // One failing handler must not end the subscription: log it in the plugin's log and go on.
        handler(event).pipe(
          Effect.catchAllCause((cause) =>
            Cause.isInterruptedOnly(cause)
              ? Effect.interrupt
              : PluginLogger.warn(`handler for ${pattern} failed on ${event.type} (${event.id})`, {
                  cause: Cause.pretty(cause)
                })
          )
        )
      ),
      Effect.forkScoped
    )
  })
