/**
 * Per-plugin resource enforcement in the host, per the manifest's
 * `resources`: a concurrency Semaphore per call direction (one shared
 * Semaphore would deadlock when calls nest: host→plugin→host), a fail-fast
 * rate limiter on plugin→host calls, and accounting of the memory a plugin
 * holds in the host (event payloads queued for it, values in flight through
 * storage) — the CheckMemory of the original design.
 */

import { QuotaExceeded, RateLimited } from "@blackhole/sdk/Errors"
import type { ResourceLimits } from "@blackhole/sdk/ResourceLimits"
import * as RateLimiter from "@effect/experimental/RateLimiter"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type { DirectDispatch } from "./ServiceRegistry.js"

/** One plugin's quotas. */
export interface Quota {
  readonly principal: string
  readonly limits: ResourceLimits
  /** Runs a host→plugin call under the inbound concurrency limit (waits for a permit). */
  readonly inbound: <A, E, R>(call: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /**
   * The inbound limit around a callback dispatch, counted without any Effect per call; undefined
   * when the plugin has a concurrency limit (waiting for a permit needs the Semaphore: use `inbound`).
   */
  readonly inboundDirect: (dispatch: DirectDispatch) => DirectDispatch | undefined
  /** Runs a plugin→host call: rate limit first (fails fast with RateLimited), then the outbound concurrency limit. */
  readonly outbound: <A, E, R>(call: Effect.Effect<A, E, R>) => Effect.Effect<A, E | RateLimited, R>
  /** Holds `bytes` of the memory quota until the Scope closes; QuotaExceeded when it would go over. */
  readonly reserveMemory: (bytes: number) => Effect.Effect<void, QuotaExceeded, Scope.Scope>
  /** Synchronous reserve for hot paths (the event bus); pair every `true` with `releaseMemory`. */
  readonly tryReserveMemory: (bytes: number) => boolean
  /** Returns memory reserved with `tryReserveMemory`. */
  readonly releaseMemory: (bytes: number) => void
  /** Current accounting, for metrics and the admin API. */
  readonly usage: Effect.Effect<{
    readonly memoryBytes: number
    readonly inbound: number
    readonly outbound: number
  }>
}

/** Builds quotas for plugins. */
export class ResourceLimiter extends Context.Tag("@blackhole/core/ResourceLimiter")<
  ResourceLimiter,
  {
    readonly make: (principal: string, limits: ResourceLimits) => Effect.Effect<Quota>
  }
>() {}

const makeQuota = (rateLimiter: RateLimiter.RateLimiter, principal: string, limits: ResourceLimits) =>
  Effect.gen(function* () {
    let memoryBytes = 0
    let inbound = 0
    let outbound = 0
    const maxMemory = limits.maxMemoryBytes
    const concurrency = limits.maxConcurrency
    const inboundPermits = concurrency === undefined ? undefined : yield* Effect.makeSemaphore(concurrency)
    const outboundPermits = concurrency === undefined ? undefined : yield* Effect.makeSemaphore(concurrency)

    const counted =
      (permits: Effect.Semaphore | undefined, track: (delta: number) => void) =>
      <A, E, R>(call: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
        const tracked = Effect.acquireUseRelease(
          Effect.sync(() => track(1)),
          () => call,
          () => Effect.sync(() => track(-1))
        )
        return permits === undefined ? tracked : permits.withPermits(1)(tracked)
      }

    const inboundLimited = counted(inboundPermits, (d) => {
      inbound += d
    })
    const outboundLimited = counted(outboundPermits, (d) => {
      outbound += d
    })

    const rate = limits.rateLimit
    const consume =
      rate === undefined
        ? Effect.void
        : rateLimiter
            .consume({
              key: principal,
              limit: rate.limit,
              window: Duration.millis(rate.windowMillis),
              onExceeded: "fail",
              algorithm: "fixed-window"
            })
            .pipe(
              Effect.catchAll((error) =>
                error instanceof RateLimiter.RateLimitExceeded
                  ? Effect.fail(
                      new RateLimited({
                        principal,
                        limit: rate.text,
                        retryAfterMillis: Duration.toMillis(error.retryAfter)
                      })
                    )
                  : // The memory store cannot fail; if it does, that is a bug, not the caller's problem.
                    Effect.die(error)
              ),
              Effect.asVoid
            )

    const tryReserveMemory = (bytes: number): boolean => {
      if (maxMemory !== undefined && memoryBytes + bytes > maxMemory) return false
      memoryBytes += bytes
      return true
    }
    const releaseMemory = (bytes: number): void => {
      memoryBytes = Math.max(0, memoryBytes - bytes)
    }

    const quota: Quota = {
      principal,
      limits,
      // Always counted (draining on reload needs the count); bounded only when maxGoroutines is set.
      inbound: inboundLimited,
      inboundDirect: (dispatch) =>
        inboundPermits !== undefined
          ? undefined
          : (method, payload, done) => {
              inbound++
              let counted = true
              const leave = () => {
                if (!counted) return
                counted = false
                inbound--
              }
              const cancel = dispatch(method, payload, (exit) => {
                leave()
                done(exit)
              })
              return () => {
                leave()
                cancel()
              }
            },
      outbound: <A, E, R>(call: Effect.Effect<A, E, R>) =>
        Effect.zipRight(consume, outboundLimited(call)) as Effect.Effect<A, E | RateLimited, R>,
      reserveMemory: (bytes) =>
        Effect.acquireRelease(
          Effect.suspend(() =>
            tryReserveMemory(bytes)
              ? Effect.void
              : Effect.fail(
                  new QuotaExceeded({
                    principal,
                    resource: "memory",
                    limit: maxMemory ?? 0,
                    requested: memoryBytes + bytes
                  })
                )
          ),
          () => Effect.sync(() => releaseMemory(bytes))
        ),
      tryReserveMemory,
      releaseMemory,
      usage: Effect.sync(() => ({ memoryBytes, inbound, outbound }))
    }
    return quota
  })

/** The limiter, with an in-memory rate-limit store (limits are per node, not cluster-wide). */
export const layer: Layer.Layer<ResourceLimiter> = Layer.effect(
  ResourceLimiter,
  Effect.gen(function* () {
    const rateLimiter = yield* RateLimiter.make
    return { make: (principal, limits) => makeQuota(rateLimiter, principal, limits) }
  })
).pipe(Layer.provide(RateLimiter.layerStoreMemory))
