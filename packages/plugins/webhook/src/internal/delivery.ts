/** Posting one event to the target, with a per-request timeout, and the retry schedule. */
import type { Event } from "@blackhole/sdk/Event"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"

/** Why one attempt failed; `retryable` is false when trying again the same way cannot help. */
export class DeliveryError extends Data.TaggedError("DeliveryError")<{
  readonly reason: string
  readonly retryable: boolean
}> {}

/** What a post needs. */
export interface Target {
  readonly url: string
  readonly timeoutMillis: number
  readonly headers: Readonly<Record<string, string>>
}

/** Retry settings (the config's). */
export interface Backoff {
  readonly maxAttempts: number
  readonly initialBackoffMillis: number
  readonly maxBackoffMillis: number
}

/**
 * The delays between attempts: doubling from `initialBackoffMillis`, capped at `maxBackoffMillis`
 * (`union` takes the shorter delay), for `maxAttempts - 1` retries. No jitter: one consumer
 * delivers in order, so there is no herd to spread out.
 */
export const backoff = (options: Backoff): Schedule.Schedule<unknown> =>
  Schedule.exponential(Duration.millis(options.initialBackoffMillis), 2).pipe(
    Schedule.union(Schedule.spaced(Duration.millis(options.maxBackoffMillis))),
    Schedule.intersect(Schedule.recurs(options.maxAttempts - 1))
  )

const describe = (error: unknown): string => {
  if (!(error instanceof Error)) return String(error)
  // fetch reports "fetch failed" and puts the useful part (ECONNREFUSED, ENOTFOUND…) in `cause`.
  const cause = (error as { cause?: unknown }).cause
  return cause instanceof Error ? `${error.message}: ${cause.message}` : error.message
}

/** Statuses worth another try: timeouts, "too early", rate limiting, and server errors. */
const retryableStatus = (status: number): boolean =>
  status === 408 || status === 425 || status === 429 || status >= 500

/** Posts `event` as JSON to the target once; any non-2xx answer is a failure. */
export const post =
  (target: Target) =>
  (event: Event): Effect.Effect<void, DeliveryError> =>
    Effect.gen(function* () {
      const { data, id, source, timestamp, type } = event
      const body = yield* Effect.try({
        try: () => JSON.stringify({ id, type, source, timestamp, data }),
        catch: (error) =>
          new DeliveryError({
            reason: `the event cannot be encoded as JSON: ${describe(error)}`,
            retryable: false
          })
      })
      const headers = {
        "content-type": "application/json",
        "user-agent": "blackhole-webhook/0.1.0",
        "x-blackhole-event": event.type,
        "x-blackhole-source": event.source,
        // Delivery is at least once: receivers de-duplicate on this.
        "x-blackhole-delivery": event.id,
        ...target.headers
      }
      const response = yield* Effect.tryPromise({
        // The signal aborts the request when the timeout interrupts this effect.
        try: async (signal) => {
          const response = await fetch(target.url, {
            method: "POST",
            headers,
            body,
            signal,
            redirect: "manual"
          })
          // Only the status matters; cancelling the body frees the connection.
          await response.body?.cancel()
          return { status: response.status, location: response.headers.get("location") }
        },
        catch: (error) => new DeliveryError({ reason: `request failed: ${describe(error)}`, retryable: true })
      }).pipe(
        Effect.timeoutFail({
          duration: Duration.millis(target.timeoutMillis),
          onTimeout: () =>
            new DeliveryError({ reason: `no response within ${target.timeoutMillis} ms`, retryable: true })
        })
      )
      const { location, status } = response
      if (status >= 200 && status < 300) return
      if (status >= 300 && status < 400) {
        return yield* new DeliveryError({
          reason: `HTTP ${status}: the target redirects${location === null ? "" : ` to ${location}`}; set url to the final address (redirects are not followed)`,
          retryable: false
        })
      }
      return yield* new DeliveryError({
        reason: retryableStatus(status)
          ? `HTTP ${status} from the target`
          : `HTTP ${status} from the target, which refuses the request: check url, headers and the receiver (not retried)`,
        retryable: retryableStatus(status)
      })
    })
