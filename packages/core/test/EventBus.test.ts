import { Event } from "@blackhole/sdk/Event"
import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Equal from "effect/Equal"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Hash from "effect/Hash"
import * as Metric from "effect/Metric"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import type { OverflowPolicy, Subscription } from "../src/EventBus.js"
import { droppedTotal, EventBus, layer, validateType } from "../src/EventBus.js"

/** The next `n` events of a subscription, in order. */
const take = (subscription: Subscription, n: number) =>
  Stream.runCollect(Stream.take(subscription.stream, n)).pipe(Effect.map(Chunk.toReadonlyArray))

const typesOf = (events: ReadonlyArray<{ readonly type: string }>) => events.map((event) => event.type)

/** Metrics live in the global registry: tests use subscriber names of their own. */
const droppedCount = (subscriber: string, reason: "overflow" | "quota") =>
  Metric.value(Metric.tagged(Metric.tagged(droppedTotal, "subscriber", subscriber), "reason", reason)).pipe(
    Effect.map((state) => state.count)
  )

/** A quota allowing `limit` bytes in flight, recording every call. */
const makeQuota = (limit: number) => {
  const calls = { reserved: [] as Array<number>, released: [] as Array<number>, inUse: 0 }
  return {
    calls,
    quota: {
      reserve: (bytes: number) => {
        calls.reserved.push(bytes)
        if (calls.inUse + bytes > limit) return false
        calls.inUse += bytes
        return true
      },
      release: (bytes: number) => {
        calls.released.push(bytes)
        calls.inUse -= bytes
      }
    }
  }
}

describe("EventBus", () => {
  it.scoped("delivers by exact type, content.* and *, and nothing that does not match", () =>
    Effect.gen(function* () {
      const bus = yield* EventBus
      const exact = yield* bus.subscribe("content.created")
      const content = yield* bus.subscribe("content.*")
      const all = yield* bus.subscribe("*")
      const user = yield* bus.subscribe("user.*")
      const deep = yield* bus.subscribe("content.*.draft")

      yield* bus.publish({ type: "content.created", source: "core", data: 1 })
      yield* bus.publish({ type: "content.deleted", source: "core" })
      yield* bus.publish({ type: "user.login", source: "core" })
      yield* bus.publish({ type: "content.created", source: "core", data: 2 })
      yield* bus.publish({ type: "content.page.draft", source: "core" })

      // Order proves absence: had a non-matching event been buffered, it would come out first.
      const exactEvents = yield* take(exact, 2)
      assert.deepStrictEqual(typesOf(exactEvents), ["content.created", "content.created"])
      assert.deepStrictEqual(
        exactEvents.map((event) => event.data),
        [1, 2]
      )
      assert.deepStrictEqual(typesOf(yield* take(content, 4)), [
        "content.created",
        "content.deleted",
        "content.created",
        "content.page.draft"
      ])
      assert.deepStrictEqual(typesOf(yield* take(all, 5)), [
        "content.created",
        "content.deleted",
        "user.login",
        "content.created",
        "content.page.draft"
      ])
      assert.deepStrictEqual(typesOf(yield* take(user, 1)), ["user.login"])
      assert.deepStrictEqual(typesOf(yield* take(deep, 1)), ["content.page.draft"])

      // Nothing else was buffered for anyone: a final event is the next one everyone sees.
      yield* bus.publish({ type: "content.created", source: "core" })
      yield* bus.publish({ type: "user.logout", source: "core" })
      assert.deepStrictEqual(typesOf(yield* take(exact, 1)), ["content.created"])
      assert.deepStrictEqual(typesOf(yield* take(user, 1)), ["user.logout"])

      const stats = yield* bus.stats
      assert.strictEqual(stats.published, 7)
      assert.strictEqual(stats.delivered, 2 + 4 + 5 + 1 + 1 + 1 + 1)
      assert.strictEqual(stats.dropped, 0)
      assert.strictEqual(stats.subscribers, 5)
    }).pipe(Effect.provide(layer()))
  )

  it.scoped("stamps a unique id, the clock's time and exactly the given source", () =>
    Effect.gen(function* () {
      const bus = yield* EventBus
      const subscription = yield* bus.subscribe("*")
      yield* TestClock.setTime(1_700_000_000_000)
      const first = yield* bus.publish({ type: "content.created", source: "plugin-a", data: { id: 7 } })
      const second = yield* bus.publish({ type: "content.created", source: "core" })
      assert.strictEqual(first.source, "plugin-a")
      assert.strictEqual(second.source, "core")
      assert.strictEqual(first.timestamp, 1_700_000_000_000)
      assert.notStrictEqual(first.id, second.id)
      assert.isUndefined(second.data)
      const received = yield* take(subscription, 2)
      assert.strictEqual(received[0], first)
      assert.deepStrictEqual(received[0]?.data, { id: 7 })
      assert.strictEqual(received[1]?.source, "core")

      // The bus builds events without the Schema.Class constructor: they must be the same thing.
      const constructed = new Event({
        id: first.id,
        type: "content.created",
        source: "plugin-a",
        timestamp: 1_700_000_000_000,
        data: first.data
      })
      assert.instanceOf(first, Event)
      assert.isTrue(Schema.is(Event)(first))
      assert.isTrue(Equal.equals(first, constructed))
      assert.strictEqual(Hash.hash(first), Hash.hash(constructed))
      assert.deepStrictEqual(Object.keys(first), Object.keys(constructed))
      assert.deepStrictEqual(Schema.encodeSync(Event)(first), Schema.encodeSync(Event)(constructed))
    }).pipe(Effect.provide(layer()))
  )

  const overflow = (policy: OverflowPolicy, subscriber: string) =>
    Effect.gen(function* () {
      const bus = yield* EventBus
      const slow = yield* bus.subscribe("tick", { capacity: 3, overflow: policy, subscriber })
      const fast = yield* bus.subscribe("tick", { capacity: 16, subscriber: `${subscriber}-fast` })
      for (let n = 1; n <= 5; n++) yield* bus.publish({ type: "tick", source: "core", data: n })
      const kept = (yield* take(slow, 3)).map((event) => event.data)
      // The larger buffer of another subscriber is unaffected by the slow one.
      assert.deepStrictEqual(
        (yield* take(fast, 5)).map((event) => event.data),
        [1, 2, 3, 4, 5]
      )
      // Room again after the drain: the next event is buffered, not dropped.
      yield* bus.publish({ type: "tick", source: "core", data: 6 })
      assert.deepStrictEqual(
        (yield* take(slow, 1)).map((event) => event.data),
        [6]
      )
      return {
        kept,
        dropped: yield* slow.dropped,
        fastDropped: yield* fast.dropped,
        stats: yield* bus.stats,
        metric: yield* droppedCount(subscriber, "overflow")
      }
    }).pipe(Effect.provide(layer()))

  it.scoped("dropping: a full buffer drops the new events and counts each", () =>
    Effect.gen(function* () {
      const result = yield* overflow("dropping", "test-dropping")
      assert.deepStrictEqual(result.kept, [1, 2, 3])
      assert.strictEqual(result.dropped, 2)
      assert.strictEqual(result.fastDropped, 0)
      assert.strictEqual(result.stats.dropped, 2)
      assert.strictEqual(result.metric, 2)
    })
  )

  it.scoped("sliding: a full buffer drops the oldest events and counts each", () =>
    Effect.gen(function* () {
      const result = yield* overflow("sliding", "test-sliding")
      assert.deepStrictEqual(result.kept, [3, 4, 5])
      assert.strictEqual(result.dropped, 2)
      assert.strictEqual(result.stats.dropped, 2)
      assert.strictEqual(result.metric, 2)
    })
  )

  it.scoped("the layer's overflow policy and capacity are the subscription defaults", () =>
    Effect.gen(function* () {
      const bus = yield* EventBus
      const subscription = yield* bus.subscribe("tick")
      for (let n = 1; n <= 4; n++) yield* bus.publish({ type: "tick", source: "core", data: n })
      assert.deepStrictEqual(
        (yield* take(subscription, 2)).map((event) => event.data),
        [3, 4]
      )
      assert.strictEqual(yield* subscription.dropped, 2)
    }).pipe(Effect.provide(layer({ capacity: 2, overflow: "sliding" })))
  )

  it.scoped("quota: a refused reservation drops and counts; release follows delivery", () =>
    Effect.gen(function* () {
      const bus = yield* EventBus
      // {"n":1} is 7 characters: two fit in 15, the third does not.
      const { calls, quota } = makeQuota(15)
      const limited = yield* bus.subscribe("item.*", { quota, subscriber: "test-quota" })
      const unlimited = yield* bus.subscribe("item.*")
      for (let n = 1; n <= 3; n++) yield* bus.publish({ type: "item.added", source: "core", data: { n } })

      assert.deepStrictEqual(calls.reserved, [7, 7, 7])
      assert.deepStrictEqual(calls.released, [])
      assert.strictEqual(yield* limited.dropped, 1)
      assert.strictEqual(yield* droppedCount("test-quota", "quota"), 1)
      assert.strictEqual(yield* droppedCount("test-quota", "overflow"), 0)
      assert.strictEqual((yield* bus.stats).dropped, 1)

      assert.deepStrictEqual(
        (yield* take(limited, 2)).map((event) => event.data),
        [{ n: 1 }, { n: 2 }]
      )
      assert.deepStrictEqual(calls.released, [7, 7])
      assert.strictEqual(calls.inUse, 0)
      assert.strictEqual((yield* take(unlimited, 3)).length, 3)

      // With the memory released, the next event fits again.
      yield* bus.publish({ type: "item.added", source: "core", data: { n: 4 } })
      assert.deepStrictEqual(
        (yield* take(limited, 1)).map((event) => event.data),
        [{ n: 4 }]
      )
    }).pipe(Effect.provide(layer()))
  )

  it.scoped("quota: overflow evictions release, and the payload is measured once per publish", () =>
    Effect.gen(function* () {
      const bus = yield* EventBus
      const a = makeQuota(1_000)
      const b = makeQuota(1_000)
      yield* bus.subscribe("m", { quota: a.quota, capacity: 1, overflow: "sliding" })
      yield* bus.subscribe("m", { quota: b.quota, capacity: 1, overflow: "dropping" })
      yield* bus.subscribe("m")
      let measured = 0
      const data = {
        toJSON: () => {
          measured++
          return "xy"
        }
      }
      yield* bus.publish({ type: "m", source: "core", data })
      yield* bus.publish({ type: "m", source: "core", data })
      assert.strictEqual(measured, 2)
      // "xy" serialises to 4 characters. Sliding reserved both and released the evicted one;
      // dropping refused the second for lack of room before reserving anything.
      assert.deepStrictEqual(a.calls.reserved, [4, 4])
      assert.deepStrictEqual(a.calls.released, [4])
      assert.deepStrictEqual(b.calls.reserved, [4])
      assert.deepStrictEqual(b.calls.released, [])

      // No subscriber with a quota matches: the payload is never serialised.
      yield* bus.subscribe("other")
      yield* bus.publish({ type: "other", source: "core", data })
      assert.strictEqual(measured, 2)
    }).pipe(Effect.provide(layer()))
  )

  it.scoped("closing the subscription's Scope ends its stream and releases what was buffered", () =>
    Effect.gen(function* () {
      const bus = yield* EventBus
      const scope = yield* Scope.make()
      const { calls, quota } = makeQuota(1_000)
      const waiting = yield* bus.subscribe("a.*").pipe(Scope.extend(scope))
      const buffered = yield* bus.subscribe("b.*", { quota }).pipe(Scope.extend(scope))
      const consumer = yield* Effect.fork(Stream.runCollect(waiting.stream))
      yield* Effect.yieldNow()
      yield* bus.publish({ type: "b.x", source: "core", data: "payload" })
      assert.strictEqual((yield* bus.stats).subscribers, 2)

      yield* Scope.close(scope, Exit.void)
      // A consumer blocked on an empty buffer ends; the unread buffer is discarded and released.
      assert.strictEqual(Chunk.size(yield* Fiber.join(consumer)), 0)
      assert.deepStrictEqual(calls.released, [9])
      assert.strictEqual(Chunk.size(yield* Stream.runCollect(buffered.stream)), 0)
      assert.strictEqual((yield* bus.stats).subscribers, 0)

      // Unsubscribed: a later publish reaches nobody and is not counted as a drop.
      yield* bus.publish({ type: "a.x", source: "core" })
      const stats = yield* bus.stats
      assert.strictEqual(stats.published, 2)
      assert.strictEqual(stats.dropped, 0)
    }).pipe(Effect.provide(layer()))
  )

  it.scoped("publish never blocks on a full or stuck subscriber", () =>
    Effect.gen(function* () {
      const bus = yield* EventBus
      const full = yield* bus.subscribe("load", { capacity: 1 })
      const stuck = yield* bus.subscribe("load", { capacity: 1 })
      // This consumer takes what it can and then never finishes handling it.
      yield* Effect.forkScoped(Stream.runForEach(stuck.stream, () => Effect.never))
      yield* Effect.yieldNow()
      for (let n = 0; n < 10_000; n++) yield* bus.publish({ type: "load", source: "core" })
      assert.strictEqual(yield* full.dropped, 9_999)
      assert.isAtLeast(yield* stuck.dropped, 9_998)
      assert.strictEqual((yield* bus.stats).published, 10_000)
    }).pipe(Effect.provide(layer()))
  )

  it.scoped("an invalid capacity is a defect", () =>
    Effect.gen(function* () {
      const bus = yield* EventBus
      const exit = yield* Effect.exit(bus.subscribe("a", { capacity: 0 }))
      assert.isTrue(Exit.isFailure(exit) && exit.cause._tag === "Die")
    }).pipe(Effect.provide(layer()))
  )

  it("validateType accepts concrete dotted types only", () => {
    assert.isUndefined(validateType("content.created"))
    assert.isUndefined(validateType("plugin.running"))
    assert.match(validateType("content.*") ?? "", /must be concrete/)
    assert.match(validateType("*") ?? "", /must be concrete/)
    assert.match(validateType("") ?? "", /empty/)
    assert.match(validateType("a..b") ?? "", /event type "a\.\.b" has an empty segment/)
    assert.match(validateType("a.b c") ?? "", /invalid segment/)
  })
})
