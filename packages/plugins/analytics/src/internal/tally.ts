/**
 * The counters, in memory. Every method is one synchronous step, so a fiber never sees them
 * half-updated; the plugin calls them inside `Effect.sync` and persists `snapshot()` in batches.
 *
 * Counts are kept per (type, source) pair, so stats can be filtered by either and still be broken
 * down by the other. At most `maxKeys` pairs are tracked; later new pairs count under `other`.
 */
import * as Schema from "effect/Schema"
import type { Counter, Stats, StatsFilter } from "../contract.js"

/** How many buckets a rate window is cut into: the rate's memory per key, and its granularity. */
const BUCKETS = 12

/** The persisted form of the counters (one storage value, rewritten on each flush). */
export const Snapshot = Schema.Struct({
  version: Schema.Literal(1),
  since: Schema.Number,
  other: Schema.NonNegativeInt,
  /** `[type, source, count]`. */
  pairs: Schema.Array(Schema.Tuple(Schema.String, Schema.String, Schema.NonNegativeInt))
})
/** @see Snapshot */
export type Snapshot = typeof Snapshot.Type

/** Events per time bucket over a sliding window: a rate for O(BUCKETS) memory, whatever the traffic. */
class RateWindow {
  private readonly counts = new Float64Array(BUCKETS)
  // The absolute bucket number each slot holds; -1 = never used.
  private readonly slots = new Float64Array(BUCKETS).fill(-1)

  constructor(private readonly bucketMillis: number) {}

  add(now: number): void {
    const slot = Math.floor(now / this.bucketMillis)
    const i = slot % BUCKETS
    if (this.slots[i] !== slot) {
      this.slots[i] = slot
      this.counts[i] = 0
    }
    this.counts[i]! += 1
  }

  /** Events in the buckets still inside the window at `now`. */
  sum(now: number): number {
    const slot = Math.floor(now / this.bucketMillis)
    let total = 0
    for (let i = 0; i < BUCKETS; i++) {
      const age = slot - this.slots[i]!
      if (age >= 0 && age < BUCKETS) total += this.counts[i]!
    }
    return total
  }
}

interface Entry {
  readonly type: string
  readonly source: string
  count: number
  readonly window: RateWindow
}

/** Tally options. */
export interface Options {
  readonly maxKeys: number
  readonly windowSeconds: number
  /** When this process started counting (the rate's denominator is never longer than its uptime). */
  readonly startedAt: number
}

const pairKey = (type: string, source: string): string => `${type}\n${source}`

/** The counters of one running plugin. */
export class Tally {
  private readonly pairs = new Map<string, Entry>()
  private readonly all: RateWindow
  private readonly overflow: { count: number; readonly window: RateWindow }
  private readonly bucketMillis: number
  private changes = 0

  private constructor(
    private readonly options: Options,
    /** When counting started, kept across restarts. */
    readonly since: number
  ) {
    this.bucketMillis = (options.windowSeconds * 1000) / BUCKETS
    this.all = new RateWindow(this.bucketMillis)
    this.overflow = { count: 0, window: new RateWindow(this.bucketMillis) }
  }

  /** Empty counters, counting from `startedAt`. */
  static empty(options: Options): Tally {
    return new Tally(options, options.startedAt)
  }

  /** Counters restored from a snapshot; pairs beyond `maxKeys` (the bound was lowered) go to `other`. */
  static restore(snapshot: Snapshot, options: Options): Tally {
    const tally = new Tally(options, snapshot.since)
    tally.overflow.count = snapshot.other
    for (const [type, source, count] of snapshot.pairs) {
      if (tally.pairs.size < options.maxKeys) {
        tally.pairs.set(pairKey(type, source), {
          type,
          source,
          count,
          window: new RateWindow(tally.bucketMillis)
        })
      } else {
        tally.overflow.count += count
      }
    }
    return tally
  }

  /** Counts one event. */
  record(type: string, source: string, now: number): void {
    this.changes++
    this.all.add(now)
    const key = pairKey(type, source)
    let entry = this.pairs.get(key)
    if (entry === undefined) {
      if (this.pairs.size >= this.options.maxKeys) {
        this.overflow.count++
        this.overflow.window.add(now)
        return
      }
      entry = { type, source, count: 0, window: new RateWindow(this.bucketMillis) }
      this.pairs.set(key, entry)
    }
    entry.count++
    entry.window.add(now)
  }

  /** Grows with every `record`: the flusher compares it to what it last saved. */
  get version(): number {
    return this.changes
  }

  /** The counters as persisted. */
  snapshot(): Snapshot {
    return {
      version: 1,
      since: this.since,
      other: this.overflow.count,
      pairs: Array.from(this.pairs.values(), ({ type, source, count }) => [type, source, count] as const)
    }
  }

  /** Stats at `now`, filtered. */
  stats(filter: StatsFilter, now: number): Stats {
    // Covered time: the window up to now, but never longer than this process has been counting,
    // and at least a second, so the first events do not read as thousands per second.
    const windowMillis = this.options.windowSeconds * 1000
    const seconds = Math.max(Math.min(windowMillis, now - this.options.startedAt), 1000) / 1000
    const rateOf = (events: number): number => events / seconds
    const types = new Map<string, { count: number; recent: number }>()
    const sources = new Map<string, { count: number; recent: number }>()
    const add = (
      into: Map<string, { count: number; recent: number }>,
      key: string,
      count: number,
      recent: number
    ) => {
      const current = into.get(key)
      if (current === undefined) into.set(key, { count, recent })
      else {
        current.count += count
        current.recent += recent
      }
    }
    const { source, typePrefix } = filter
    const filtered = source !== undefined || typePrefix !== undefined
    let total = 0
    let recent = 0
    for (const entry of this.pairs.values()) {
      if (source !== undefined && entry.source !== source) continue
      if (typePrefix !== undefined && !entry.type.startsWith(typePrefix)) continue
      const entryRecent = entry.window.sum(now)
      add(types, entry.type, entry.count, entryRecent)
      add(sources, entry.source, entry.count, entryRecent)
      total += entry.count
      recent += entryRecent
    }
    const counters = (from: Map<string, { count: number; recent: number }>): Record<string, Counter> =>
      Object.fromEntries(
        Array.from(from, ([key, { count, recent }]) => [key, { count, rate: rateOf(recent) }] as const).sort(
          ([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)
        )
      )
    const otherRecent = this.overflow.window.sum(now)
    return {
      since: this.since,
      total: filtered ? total : total + this.overflow.count,
      rate: rateOf(filtered ? recent : this.all.sum(now)),
      windowSeconds: this.options.windowSeconds,
      types: counters(types),
      sources: counters(sources),
      other: { count: this.overflow.count, rate: rateOf(otherRecent) },
      keys: this.pairs.size,
      maxKeys: this.options.maxKeys
    }
  }
}
