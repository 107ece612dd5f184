import { HookVetoed } from "@blackhole/sdk/Errors"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as ExitModule from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import type { HookRegistration, HookRegistry } from "../HookRegistry.js"

/** @internal */
export const DEFAULT_TIMEOUT_MILLIS = 1000

const HOOK_NAME = /^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)+$/

/** @internal */
export const isValidHookName = (name: string): boolean => HOOK_NAME.test(name)

/** @internal */
export const isBeforePhase = (name: string): boolean => name.split(".")[1] === "before"

type Handler = (payload: unknown) => Effect.Effect<void, unknown>

interface Hook {
  readonly registration: HookRegistration
  readonly handler: Handler
  readonly timeoutMillis: number
}

/** The hooks of one name, sorted; replaced (never mutated) so a running chain keeps its snapshot. */
interface Slot {
  readonly before: boolean
  readonly hooks: ReadonlyArray<Hook>
}

/** Why a hook did not succeed. */
type Outcome =
  | { readonly _tag: "Veto"; readonly reason: string }
  | { readonly _tag: "Failed"; readonly reason: string; readonly cause: Cause.Cause<unknown> | undefined }
  | { readonly _tag: "Died"; readonly reason: string; readonly cause: Cause.Cause<unknown> }

// Hook errors are arbitrary (a plugin's own classes, decoded wire errors, strings): say what we can.
const describe = (error: unknown): string => {
  try {
    if (typeof error === "string") return error
    const tag =
      Predicate.hasProperty(error, "_tag") && typeof error._tag === "string" ? error._tag : undefined
    const message =
      Predicate.hasProperty(error, "message") && typeof error.message === "string" && error.message !== ""
        ? error.message
        : undefined
    if (message !== undefined) return tag === undefined ? message : `${tag}: ${message}`
    if (tag !== undefined) return tag
    return (JSON.stringify(error) as string | undefined) ?? String(error)
  } catch {
    return "(an error that cannot be described)"
  }
}

const isVeto = (error: unknown): error is { readonly reason: string } =>
  // By tag rather than class: a Veto decoded from a subprocess, or from a second copy of the
  // sdk, is not an instance of this process's class.
  Predicate.isTagged(error, "Veto") &&
  Predicate.hasProperty(error, "reason") &&
  typeof error.reason === "string"

const classify = (
  exit: Exit.Exit<Option.Option<void>, unknown>,
  timeoutMillis: number
): Outcome | undefined => {
  if (exit._tag === "Success") {
    return Option.isSome(exit.value)
      ? undefined
      : { _tag: "Failed", reason: `timed out after ${timeoutMillis} ms`, cause: undefined }
  }
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure)) {
    return isVeto(failure.value)
      ? { _tag: "Veto", reason: failure.value.reason }
      : { _tag: "Failed", reason: `failed: ${describe(failure.value)}`, cause: exit.cause }
  }
  const defect = Cause.dieOption(exit.cause)
  if (Option.isSome(defect))
    return { _tag: "Died", reason: `died: ${describe(defect.value)}`, cause: exit.cause }
  return { _tag: "Failed", reason: "was interrupted", cause: exit.cause }
}

/**
 * Runs a hook with its deadline. The handler runs in a daemon fiber (with the caller's context; a
 * child would make the caller wait for it on exit) and a plain timer bounds it: on time out the
 * caller goes on at once and the handler is interrupted in the background, so one that ignores
 * interruption cannot hang the write path. A fork and a timer, not the several fibers of
 * `timeoutOption(disconnect(…))`, on every write.
 */
const attempt = (hook: Hook, payload: unknown): Effect.Effect<Exit.Exit<Option.Option<void>, unknown>> =>
  Effect.flatMap(
    // `suspend` turns a handler that throws into a defect.
    Effect.forkDaemon(Effect.suspend(() => hook.handler(payload))),
    (child) =>
      Effect.async<Exit.Exit<Option.Option<void>, unknown>>((resume) => {
        let settled = false
        const timer = setTimeout(() => {
          if (settled) return
          settled = true
          child.unsafeInterruptAsFork(FiberId.none)
          resume(Effect.succeed(ExitModule.succeed(Option.none())))
        }, hook.timeoutMillis)
        child.addObserver((exit) => {
          if (settled) return
          settled = true
          clearTimeout(timer)
          resume(Effect.succeed(ExitModule.map(exit, Option.some)))
        })
        return Effect.sync(() => {
          settled = true
          clearTimeout(timer)
          child.unsafeInterruptAsFork(FiberId.none)
        })
      })
  )

const report = (hook: Hook, outcome: Outcome, what: string): Effect.Effect<void> => {
  const { name, owner } = hook.registration
  const message = `hook ${name} of ${owner} ${outcome.reason}${what}`
  const log =
    outcome._tag === "Died"
      ? Effect.logError(message, outcome.cause)
      : outcome._tag === "Failed" && outcome.cause !== undefined
        ? Effect.logWarning(message, outcome.cause)
        : Effect.logWarning(message)
  return Effect.annotateLogs(log, { hook: name, owner })
}

const vetoed = (hook: Hook, reason: string): HookVetoed =>
  new HookVetoed({ hook: hook.registration.name, by: hook.registration.owner, reason })

const runBefore = (hooks: ReadonlyArray<Hook>, payload: unknown, failOpen: boolean) =>
  Effect.gen(function* () {
    for (const hook of hooks) {
      const outcome = classify(yield* attempt(hook, payload), hook.registration.timeoutMillis)
      if (outcome === undefined) continue
      if (outcome._tag === "Veto") return yield* Effect.fail(vetoed(hook, outcome.reason))
      if (!failOpen) {
        yield* report(hook, outcome, "; vetoing (hooks fail closed)")
        return yield* Effect.fail(vetoed(hook, `hook ${outcome.reason}`))
      }
      yield* report(hook, outcome, "; skipped (failOpen)")
    }
  })

const runAfter = (hooks: ReadonlyArray<Hook>, payload: unknown) =>
  Effect.gen(function* () {
    for (const hook of hooks) {
      const outcome = classify(yield* attempt(hook, payload), hook.registration.timeoutMillis)
      if (outcome === undefined) continue
      yield* outcome._tag === "Veto"
        ? report(
            hook,
            { _tag: "Failed", reason: `vetoed (${outcome.reason})`, cause: undefined },
            "; ignored: only before hooks can veto"
          )
        : report(hook, outcome, "; the other hooks still run")
    }
  })

const checkMillis = (value: number, what: string): string | undefined =>
  value > 0 && value <= Number.MAX_SAFE_INTEGER
    ? undefined
    : `${what} must be a positive number of milliseconds, got ${value}`

/** @internal */
export const make = (options?: {
  readonly defaultTimeoutMillis?: number
  readonly failOpen?: boolean
}): Effect.Effect<HookRegistry.Service> =>
  Effect.suspend(() => {
    const defaultTimeoutMillis = options?.defaultTimeoutMillis ?? DEFAULT_TIMEOUT_MILLIS
    const failOpen = options?.failOpen ?? false
    const invalid = checkMillis(defaultTimeoutMillis, "HookRegistry defaultTimeoutMillis")
    if (invalid !== undefined) return Effect.dieMessage(invalid)

    const slots = new Map<string, Slot>()

    const add = (hook: Hook): void => {
      const { name, priority } = hook.registration
      const slot = slots.get(name)
      const hooks = slot?.hooks ?? []
      // After every hook of lower or equal priority: equal priorities keep registration order.
      let at = hooks.length
      while (at > 0 && hooks[at - 1]!.registration.priority > priority) at--
      slots.set(name, {
        before: slot?.before ?? isBeforePhase(name),
        hooks: [...hooks.slice(0, at), hook, ...hooks.slice(at)]
      })
    }

    const remove = (hook: Hook): void => {
      const name = hook.registration.name
      const slot = slots.get(name)
      if (slot === undefined) return
      const hooks = slot.hooks.filter((h) => h !== hook)
      // Dropping the empty slot keeps `run` on its allocation-free path.
      if (hooks.length === 0) slots.delete(name)
      else slots.set(name, { before: slot.before, hooks })
    }

    const service: HookRegistry.Service = {
      register: (name, owner, handler, registerOptions) => {
        if (!isValidHookName(name)) {
          return Effect.dieMessage(
            `invalid hook name ${JSON.stringify(name)}: use dotted segments of [a-z][a-z0-9-]*, at least two (e.g. storage.before.write)`
          )
        }
        const priority = registerOptions?.priority ?? 0
        const timeoutMillis = registerOptions?.timeoutMillis ?? defaultTimeoutMillis
        if (!Number.isFinite(priority)) {
          return Effect.dieMessage(
            `hook ${name} of ${owner}: priority must be a finite number, got ${priority}`
          )
        }
        const invalidTimeout = checkMillis(timeoutMillis, `hook ${name} of ${owner}: timeoutMillis`)
        if (invalidTimeout !== undefined) return Effect.dieMessage(invalidTimeout)
        const hook: Hook = {
          registration: { name, owner, priority, timeoutMillis },
          handler,
          timeoutMillis
        }
        return Effect.acquireRelease(
          Effect.sync(() => add(hook)),
          () => Effect.sync(() => remove(hook))
        )
      },
      run: (name, payload) => {
        const slot = slots.get(name)
        if (slot === undefined) return Effect.void
        return slot.before ? runBefore(slot.hooks, payload, failOpen) : runAfter(slot.hooks, payload)
      },
      has: (name) => slots.has(name),
      registrations: Effect.sync(() => {
        const all: Array<HookRegistration> = []
        for (const slot of slots.values()) for (const hook of slot.hooks) all.push(hook.registration)
        return all
      })
    }
    return Effect.succeed(service)
  })
