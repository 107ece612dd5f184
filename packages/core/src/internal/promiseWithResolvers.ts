/**
 * `Promise.withResolvers` for Node 20. libp2p 3 (and its helpers: it-queue, mortice, yamux,
 * @libp2p/utils) call it on the first dial, stream drain or stop; Node 20 lacks it (it is ES2024),
 * so without this the first dial throws inside libp2p and surfaces as an unhandled rejection.
 * Importing this module installs it (only when missing); the P2P layer also calls
 * `installPromiseWithResolvers()` before it loads libp2p with a dynamic `import()`, so the order
 * of static imports cannot defeat it.
 *
 * @internal
 */

/** The shape `Promise.withResolvers` returns; spelled out because our `lib` (ES2023) lacks it. */
interface Resolvers<A> {
  readonly promise: Promise<A>
  readonly resolve: (value: A | PromiseLike<A>) => void
  readonly reject: (reason?: unknown) => void
}

/**
 * Installs the polyfill on `target` (default: the global `Promise`) when it has none. Returns true
 * when it installed one, false when a native (or earlier) implementation was already there.
 *
 * @internal
 */
export const installPromiseWithResolvers = (target: PromiseConstructor = Promise): boolean => {
  const promiseClass = target as PromiseConstructor & { withResolvers?: unknown }
  if (typeof promiseClass.withResolvers === "function") {
    return false
  }
  // Like the native one, it constructs `this` (so subclasses get their own kind of promise) and
  // is a non-enumerable, writable, configurable property.
  Object.defineProperty(promiseClass, "withResolvers", {
    configurable: true,
    enumerable: false,
    writable: true,
    value: function withResolvers<A>(this: PromiseConstructor): Resolvers<A> {
      let resolve!: (value: A | PromiseLike<A>) => void
      let reject!: (reason?: unknown) => void
      const promise = new this<A>((onResolve, onReject) => {
        resolve = onResolve
        reject = onReject
      })
      return { promise, resolve, reject }
    }
  })
  return true
}

installPromiseWithResolvers()
