/**
 * Hooks: named interception points `<area>.<phase>.<operation>` (`storage.before.write`, …, and
 * custom names plugins declare). A `before` hook may veto; one that fails, dies or times out
 * vetoes too (fail closed) unless the layer is configured `failOpen`. Any other phase runs every
 * hook and only logs failures. Order is stable: priority ascending, then registration order.
 */
import type { HookVetoed } from "@blackhole/sdk/Errors"
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/hookRegistry.js"

/** One registered hook, as listed by `registrations` (for the API and diagnostics). */
export interface HookRegistration {
  readonly name: string
  /** Plugin id or "core"; named by `HookVetoed.by` and in logs. */
  readonly owner: string
  readonly priority: number
  readonly timeoutMillis: number
}

/** The node's hook registry; plugins register through the sandbox's `Hooks` (permission-checked). */
export class HookRegistry extends Context.Tag("@blackhole/core/HookRegistry")<
  HookRegistry,
  HookRegistry.Service
>() {}

/** Types belonging to the {@link HookRegistry} tag. */
export declare namespace HookRegistry {
  /** What the HookRegistry service offers. */
  export interface Service {
    /**
     * Registers `handler` until the Scope closes. It may fail with `Hooks.Veto` (from
     * `@blackhole/sdk/Hooks`) or anything else. Dies on an invalid name (see `isValidHookName`),
     * a non-finite priority or a non-positive timeout: callers validate what plugins send.
     */
    readonly register: (
      name: string,
      owner: string,
      handler: (payload: unknown) => Effect.Effect<void, unknown>,
      options?: {
        /** Lower runs first; equal priorities run in registration order. Default 0. */
        readonly priority?: number
        /** Default from the layer options (1000). */
        readonly timeoutMillis?: number
      }
    ) => Effect.Effect<void, never, Scope.Scope>
    /**
     * Runs the hooks of `name` in order, one at a time. `before` phase: stops at the first veto
     * (`HookVetoed` naming the owner); a failure, defect or timeout also vetoes, unless the layer
     * is `failOpen` (then it is logged and skipped). Other phases: every hook runs, failures are
     * logged. With no hook registered this is a Map lookup returning a shared `Effect.void`.
     */
    readonly run: (name: string, payload: unknown) => Effect.Effect<void, HookVetoed>
    /** Whether any hook is registered under `name` now: hot paths skip building a hook payload. */
    readonly has: (name: string) => boolean
    /** Every registration, grouped by name, each group in run order. */
    readonly registrations: Effect.Effect<ReadonlyArray<HookRegistration>>
  }
}

/** True for dotted names of at least two `[a-z][a-z0-9-]*` segments (built-ins have three). */
export const isValidHookName: (name: string) => boolean = internal.isValidHookName

/** True when the phase (second segment) is `before`: such hooks may veto and fail closed. */
export const isBeforePhase: (name: string) => boolean = internal.isBeforePhase

/** Builds a registry; `failOpen` makes failing `before` hooks log and skip instead of veto. */
export const make: (options?: {
  readonly defaultTimeoutMillis?: number
  readonly failOpen?: boolean
}) => Effect.Effect<HookRegistry.Service> = internal.make

/** The registry with its options: `defaultTimeoutMillis` (1000), `failOpen` (false). */
export const layer = (options?: {
  readonly defaultTimeoutMillis?: number
  readonly failOpen?: boolean
}): Layer.Layer<HookRegistry> => Layer.effect(HookRegistry, make(options))
