import { randomBytes } from "node:crypto"
import { Event } from "@blackhole/sdk/Event"
import * as EventPattern from "@blackhole/sdk/EventPattern"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type * as Types from "effect/Types"
import type { EventBus, OverflowPolicy, Stats, SubscribeOptions, Subscription } from "../EventBus.js"

/** @internal */
export const DEFAULT_CAPACITY = 1024

/** @internal */
export const publishedTotal = Metric.counter("event_bus_published_total", {
  description: "Events published on the node's bus, by source"
})

/** @internal */
export const deliveredTotal = Metric.counter("event_bus_delivered_total", {
  description: "Events handed from a subscriber's buffer to its stream, by subscriber"
})

/** @internal */
export const droppedTotal = Metric.counter("event_bus_dropped_total", {
  description: "Events dropped for a subscriber, by subscriber and reason (overflow | quota)"
})

// Shared so that the hot path's metric updates allocate nothing: an empty extra-tag array makes
// the metric reuse its cached hook.
const NO_TAGS: ReadonlyArray<MetricLabel.MetricLabel> = []

// Distinct event types seen by publishers are unbounded (a plugin chooses them), so the
// type → subscribers cache is cleared rather than allowed to grow past this.
const MAX_CACHED_TYPES = 4096

// A buffer starts this small and doubles up to its capacity, so a thousand idle subscribers
// with the default capacity do not each hold a 1024-slot array.
const INITIAL_SLOTS = 16

// `bytes` value meaning "no subscriber needed the size yet" / "the payload cannot be measured".
const NOT_MEASURED = -1
const UNMEASURABLE = -2

const END_OF_STREAM: Effect.Effect<never, Option.Option<never>> = Effect.fail(Option.none())

type Quota = NonNullable<SubscribeOptions["quota"]>

/** Bus-wide counters behind `stats`, shared by the bus and its subscribers. */
interface Counters {
  published: number
  delivered: number
  dropped: number
}

/** Size used for quota accounting; computed at most once per publish. */
const payloadSize = (data: unknown): number => {
  try {
    // JSON.stringify returns undefined (despite its type) for `undefined` and functions.
    return (JSON.stringify(data) as string | undefined)?.length ?? 0
  } catch {
    // Cycles and BigInts cannot be measured, so they cannot be accounted for either.
    return UNMEASURABLE
  }
}

/**
 * Builds an Event without its constructor. Schema.Class copies its argument and walks the fields
 * for defaults even with validation off (about 1 µs, most of a publish); an Event is a Data.Class
 * instance, i.e. own properties on `Event.prototype`, so this is the same object (a test checks
 * it equals a constructed one). Fields go in declaration order so hashing agrees too.
 */
const makeEvent = (id: string, type: string, source: string, timestamp: number, data: unknown): Event => {
  const event: Types.Mutable<Event> = Object.create(Event.prototype)
  event.id = id
  event.type = type
  event.source = source
  event.timestamp = timestamp
  event.data = data
  return event
}

/**
 * One subscriber's bounded buffer: a ring that grows up to `capacity`, with the overflow
 * policy applied here rather than by an Effect Queue so that every eviction can be counted
 * and its quota released (a sliding Queue drops its oldest element silently).
 */
class Subscriber {
  items: Array<Event | undefined>
  // Bytes reserved for each slot; only kept when the subscriber has a quota.
  sizes: Array<number> = []
  head = 0
  size = 0
  closed = false
  dropped = 0
  readonly waiters = new Set<(resume: Effect.Effect<void>) => void>()
  readonly overflowDrops: Metric.Metric.Counter<number>
  readonly quotaDrops: Metric.Metric.Counter<number>
  readonly deliveries: Metric.Metric.Counter<number>

  constructor(
    readonly pattern: string,
    readonly capacity: number,
    readonly sliding: boolean,
    readonly quota: Quota | undefined,
    readonly counters: Counters,
    subscriber: string
  ) {
    const who = MetricLabel.make("subscriber", subscriber)
    this.overflowDrops = Metric.taggedWithLabels(droppedTotal, [who, MetricLabel.make("reason", "overflow")])
    this.quotaDrops = Metric.taggedWithLabels(droppedTotal, [who, MetricLabel.make("reason", "quota")])
    this.deliveries = Metric.taggedWithLabels(deliveredTotal, [who])
    const slots = Math.min(capacity, INITIAL_SLOTS)
    this.items = new Array<Event | undefined>(slots)
    if (quota !== undefined) this.sizes = new Array<number>(slots).fill(0)
  }

  /** Buffers `event`, or drops and counts it; never blocks. */
  offer(event: Event, bytes: number): void {
    if (this.closed) return
    const full = this.size === this.capacity
    if (full && !this.sliding) {
      this.drop(this.overflowDrops)
      return
    }
    if (this.quota !== undefined && (bytes < 0 || !this.reserve(bytes))) {
      this.drop(this.quotaDrops)
      return
    }
    if (full) {
      // Sliding: the oldest buffered event makes room for the new one.
      this.release(this.head)
      this.items[this.head] = undefined
      this.head = (this.head + 1) % this.items.length
      this.size--
      this.drop(this.overflowDrops)
    } else if (this.size === this.items.length) {
      this.grow()
    }
    const slot = (this.head + this.size) % this.items.length
    this.items[slot] = event
    if (this.quota !== undefined) this.sizes[slot] = bytes
    this.size++
    if (this.waiters.size > 0) this.wake()
  }

  /** Empties the buffer into one chunk: the events have left the buffer (delivered). */
  takeAll(): Chunk.Chunk<Event> {
    const n = this.size
    const out = new Array<Event>(n)
    for (let i = 0; i < n; i++) {
      const slot = (this.head + i) % this.items.length
      out[i] = this.items[slot]!
      this.items[slot] = undefined
      this.release(slot)
    }
    this.head = 0
    this.size = 0
    this.counters.delivered += n
    this.deliveries.unsafeUpdate(n, NO_TAGS)
    return Chunk.unsafeFromArray(out)
  }

  /** Ends the subscription: buffered events are discarded (and their quota released). */
  close(): void {
    if (this.closed) return
    this.closed = true
    for (let i = 0; i < this.size; i++) {
      const slot = (this.head + i) % this.items.length
      this.items[slot] = undefined
      this.release(slot)
    }
    this.size = 0
    this.wake()
  }

  /** Resumes once the buffer holds something or the subscription is closed. */
  readonly awaitOffer: Effect.Effect<void> = Effect.async<void>((resume) => {
    // The consumer may have yielded between its check and this registration.
    if (this.size > 0 || this.closed) return resume(Effect.void)
    this.waiters.add(resume)
    return Effect.sync(() => {
      this.waiters.delete(resume)
    })
  })

  readonly pull: Effect.Effect<Chunk.Chunk<Event>, Option.Option<never>> = Effect.suspend(() => {
    if (this.size > 0) return Effect.succeed(this.takeAll())
    if (this.closed) return END_OF_STREAM
    return Effect.zipRight(this.awaitOffer, this.pull)
  })

  private wake(): void {
    for (const resume of this.waiters) resume(Effect.void)
    this.waiters.clear()
  }

  private drop(metric: Metric.Metric.Counter<number>): void {
    this.dropped++
    this.counters.dropped++
    metric.unsafeUpdate(1, NO_TAGS)
  }

  private reserve(bytes: number): boolean {
    try {
      return this.quota!.reserve(bytes)
    } catch {
      // A throwing accountant must not abort delivery to the other subscribers: refuse.
      return false
    }
  }

  private release(slot: number): void {
    if (this.quota === undefined) return
    try {
      this.quota.release(this.sizes[slot]!)
    } catch {
      // Nothing sensible to do on the publish path; the accountant owns its own consistency.
    }
  }

  private grow(): void {
    const length = this.items.length
    const next = Math.min(this.capacity, length * 2)
    const items = new Array<Event | undefined>(next)
    const sizes = this.quota === undefined ? this.sizes : new Array<number>(next).fill(0)
    for (let i = 0; i < this.size; i++) {
      const slot = (this.head + i) % length
      items[i] = this.items[slot]
      if (this.quota !== undefined) sizes[i] = this.sizes[slot]!
    }
    this.items = items
    this.sizes = sizes
    this.head = 0
  }
}

const checkCapacity = (capacity: number, where: string): string | undefined =>
  Number.isSafeInteger(capacity) && capacity >= 1
    ? undefined
    : `EventBus ${where}: capacity must be a positive integer, got ${capacity}`

/** @internal */
export const make = (options?: {
  readonly capacity?: number
  readonly overflow?: OverflowPolicy
}): Effect.Effect<EventBus.Service> =>
  // The clock is taken once, here, so a publish reads the time without a context lookup (and
  // tests that build the layer under TestClock get deterministic timestamps).
  Effect.clockWith((clock) => {
    const defaultCapacity = options?.capacity ?? DEFAULT_CAPACITY
    const defaultOverflow = options?.overflow ?? "dropping"
    const invalid = checkCapacity(defaultCapacity, "layer")
    if (invalid !== undefined) return Effect.dieMessage(invalid)

    // A random prefix keeps ids unique across restarts of the node; the counter keeps them
    // unique (and cheap) within one run.
    const idPrefix = `${randomBytes(6).toString("base64url")}-`
    let sequence = 0
    const counters: Counters = { published: 0, delivered: 0, dropped: 0 }
    // Replaced, never mutated, so a publish iterating a snapshot is unaffected by (un)subscribes.
    let subscribers: ReadonlyArray<Subscriber> = []
    const byType = new Map<string, ReadonlyArray<Subscriber>>()
    // Sources are plugin ids stamped by the host (or "core"): a small, bounded set.
    const publishedBySource = new Map<string, Metric.Metric.Counter<number>>()

    const matching = (type: string): ReadonlyArray<Subscriber> => {
      let targets = byType.get(type)
      if (targets === undefined) {
        targets = subscribers.filter((subscriber) => EventPattern.matches(subscriber.pattern, type))
        if (byType.size >= MAX_CACHED_TYPES) byType.clear()
        byType.set(type, targets)
      }
      return targets
    }

    const countPublished = (source: string): void => {
      let metric = publishedBySource.get(source)
      if (metric === undefined) {
        metric = Metric.tagged(publishedTotal, "source", source)
        publishedBySource.set(source, metric)
      }
      metric.unsafeUpdate(1, NO_TAGS)
    }

    const unsafePublish = (
      input: { readonly type: string; readonly source: string; readonly data?: unknown },
      now: number
    ): Event => {
      // Not validated: every field is set here, and the type is checked by callers.
      const event = makeEvent(idPrefix + (++sequence).toString(36), input.type, input.source, now, input.data)
      counters.published++
      countPublished(input.source)
      if (subscribers.length === 0) return event
      const targets = matching(input.type)
      let bytes = NOT_MEASURED
      for (let i = 0; i < targets.length; i++) {
        const subscriber = targets[i]!
        if (subscriber.quota !== undefined && bytes === NOT_MEASURED) bytes = payloadSize(input.data)
        subscriber.offer(event, bytes)
      }
      return event
    }

    const add = (subscriber: Subscriber): void => {
      subscribers = [...subscribers, subscriber]
      byType.clear()
    }

    const remove = (subscriber: Subscriber): void => {
      subscribers = subscribers.filter((s) => s !== subscriber)
      byType.clear()
      subscriber.close()
    }

    const service: EventBus.Service = {
      publish: (input) => Effect.sync(() => unsafePublish(input, clock.unsafeCurrentTimeMillis())),
      subscribe: (pattern, subscribeOptions) => {
        const capacity = subscribeOptions?.capacity ?? defaultCapacity
        const invalidCapacity = checkCapacity(capacity, `subscribe(${JSON.stringify(pattern)})`)
        if (invalidCapacity !== undefined) return Effect.dieMessage(invalidCapacity)
        return Effect.acquireRelease(
          Effect.sync(() => {
            const subscriber = new Subscriber(
              pattern,
              capacity,
              (subscribeOptions?.overflow ?? defaultOverflow) === "sliding",
              subscribeOptions?.quota,
              counters,
              subscribeOptions?.subscriber ?? "core"
            )
            add(subscriber)
            return subscriber
          }),
          (subscriber) => Effect.sync(() => remove(subscriber))
        ).pipe(
          Effect.map(
            (subscriber): Subscription => ({
              stream: Stream.repeatEffectChunkOption(subscriber.pull),
              dropped: Effect.sync(() => subscriber.dropped)
            })
          )
        )
      },
      stats: Effect.sync(
        (): Stats => ({
          published: counters.published,
          delivered: counters.delivered,
          dropped: counters.dropped,
          subscribers: subscribers.length
        })
      )
    }
    return Effect.succeed(service)
  })

/** @internal */
export const validateType = (type: string): string | undefined => {
  const reason = EventPattern.validate(type)
  if (reason !== undefined) return reason.replace("event pattern", "event type")
  // Valid pattern segments hold a `*` only as a whole segment, so any `*` is a wildcard.
  if (type.includes("*"))
    return `event type ${JSON.stringify(type)} must be concrete: "*" is only for patterns`
  return undefined
}
