/**
 * Spans on the mesh's hot path, only when the application turned tracing on.
 * An Effect span costs CPU on every call even with no exporter behind it, and
 * the per-call path is measured: off by default, so it is free when off.
 */
import * as Effect from "effect/Effect"

let enabled = false

/** Turns mesh spans on for this process (the node app does when OpenTelemetry is configured). */
export const enable = (): void => {
  enabled = true
}

/** Whether mesh spans are on. */
export const isEnabled = (): boolean => enabled

/** Wraps `effect` in a span when tracing is on; otherwise returns it unchanged. */
export const span =
  (name: string, attributes: Record<string, unknown>) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    enabled ? Effect.withSpan(effect, name, { attributes, kind: "client" }) : effect
