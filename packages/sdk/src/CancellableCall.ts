/**
 * An Effect over a callback-style call to another process (a fast-path `Call` frame): it waits for
 * the call's answer, and when the waiting fiber is interrupted first, it cancels the call (sends
 * `Cancel`) exactly once and never after the answer.
 *
 * The cancel runs in a failure handler inside a mask, not as `Effect.async`'s canceler: that one
 * costs an `onInterrupt` per call, measured at as much as the rest of a mesh call's host side.
 */
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"

/**
 * Starts the call with `start`, which hands `done` to whatever answers it and returns what cancels
 * it. `done` may be called synchronously, inside `start`.
 */
export const make = <A, E>(
  start: (done: (exit: Exit.Exit<A, E>) => void) => () => void
): Effect.Effect<A, E> =>
  Effect.suspend(() => {
    let settled = false
    let cancel: (() => void) | undefined
    const call = Effect.async<A, E>((resume) => {
      cancel = start((exit) => {
        settled = true
        resume(exit)
      })
    })
    return Effect.uninterruptibleMask((restore) =>
      Effect.catchAllCause(restore(call), (cause) => {
        if (!settled) {
          settled = true
          cancel?.()
        }
        return Effect.failCause(cause)
      })
    )
  })
