/**
 * Hybrid logical clocks and the last-writer-wins rule. Pure functions: every node applies the same
 * ones, so the same records give the same winner everywhere, whatever order they arrive in.
 */

/** A hybrid logical clock reading: wall-clock milliseconds, and a counter for events within one. */
export interface Timestamp {
  readonly millis: number
  readonly counter: number
}

/** A record's version: when it was written (HLC) and by which node (the tie-break). */
export interface Version extends Timestamp {
  readonly node: string
}

/** The clock before anything happened. */
export const zero: Timestamp = { millis: 0, counter: 0 }

/** Orders timestamps: by milliseconds, then counter. */
export const compareTimestamps = (a: Timestamp, b: Timestamp): -1 | 0 | 1 =>
  a.millis !== b.millis
    ? a.millis < b.millis
      ? -1
      : 1
    : a.counter !== b.counter
      ? a.counter < b.counter
        ? -1
        : 1
      : 0

/**
 * The total order of versions: HLC first, then the writer's node id compared as JavaScript strings
 * (UTF-16 code units), which every node computes identically.
 */
export const compare = (a: Version, b: Version): -1 | 0 | 1 => {
  const byClock = compareTimestamps(a, b)
  if (byClock !== 0) return byClock
  return a.node === b.node ? 0 : a.node < b.node ? -1 : 1
}

/** The greater of two versions (either one when equal). */
export const max = (a: Version, b: Version): Version => (compare(a, b) >= 0 ? a : b)

/** Whether `a` and `b` are the same version. */
export const equals = (a: Version, b: Version): boolean => compare(a, b) === 0

/**
 * The clock's next reading for a local event at wall-clock `now`: greater than `clock` even when the
 * wall clock went backwards (then the counter carries on from the clock's milliseconds).
 */
export const tick = (clock: Timestamp, now: number): Timestamp =>
  now > clock.millis ? { millis: now, counter: 0 } : { millis: clock.millis, counter: clock.counter + 1 }

/**
 * The clock after receiving `remote` at wall-clock `now`: at least as great as both, so the next
 * local {@link tick} orders after everything seen (the HLC receive rule).
 */
export const receive = (clock: Timestamp, remote: Timestamp, now: number): Timestamp => {
  const millis = Math.max(clock.millis, remote.millis, now)
  if (millis === clock.millis && millis === remote.millis) {
    return { millis, counter: Math.max(clock.counter, remote.counter) + 1 }
  }
  if (millis === clock.millis) return { millis, counter: clock.counter + 1 }
  if (millis === remote.millis) return { millis, counter: remote.counter + 1 }
  return { millis, counter: 0 }
}

/** What a node holds for a key: the version, and whether it is a tombstone. */
export interface Held {
  readonly version: Version
  /** The version this write replaced on its writer (null for a first write): tells concurrent from later. */
  readonly prev: Version | null
  readonly deleted: boolean
}

/** The outcome of receiving a record for a key. */
export type Decision =
  /** The incoming record is newer: store it. */
  | { readonly _tag: "Apply"; readonly conflict: boolean }
  /** Same version: nothing to do. */
  | { readonly _tag: "Same" }
  /** What is held is newer: keep it (the sender is behind). */
  | { readonly _tag: "Keep"; readonly conflict: boolean }

/**
 * Last writer wins on (HLC, node id). A conflict is reported when the losing write was not known to
 * the winning writer (the winner's `prev` is older than the loser): the two writes were concurrent,
 * and the loser's value is discarded.
 */
export const decide = (held: Held | undefined, incoming: Held): Decision => {
  if (held === undefined) return { _tag: "Apply", conflict: false }
  const order = compare(incoming.version, held.version)
  if (order === 0) return { _tag: "Same" }
  const [winner, loser] = order > 0 ? [incoming, held] : [held, incoming]
  const conflict = winner.prev === null || compare(winner.prev, loser.version) < 0
  return order > 0 ? { _tag: "Apply", conflict } : { _tag: "Keep", conflict }
}

/** A version as a compact string, for logs and events: `<millis>.<counter>@<node>`. */
export const format = (version: Version): string => `${version.millis}.${version.counter}@${version.node}`
