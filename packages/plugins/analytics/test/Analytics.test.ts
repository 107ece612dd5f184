/** The analytics plugin on the SDK's in-memory test kit: no node, no subprocess, a TestClock. */
import { fileURLToPath } from "node:url"
import type * as HttpEndpoint from "@blackhole/sdk/HttpEndpoint"
import * as PluginConfig from "@blackhole/sdk/PluginConfig"
import { PluginTest } from "@blackhole/sdk/testing"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as TestClock from "effect/TestClock"
import { Analytics, type Stats, type StatsFilter } from "../src/contract.js"
import definition, { countersKey, pluginId } from "../src/index.js"

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** Starts the plugin with exactly the permissions its manifest requests. */
const start = (config: unknown = {}, options: PluginTest.RunOptions = {}) =>
  Effect.map(PluginTest.run(definition, { permissions: "manifest", config, ...options }), (running) => ({
    ...running,
    stats: (filter: StatsFilter = {}) => running.client(Analytics).getStats(filter)
  }))

/** Waits (without real time) until the stats satisfy `predicate`. */
const statsWhen = (
  stats: (filter?: StatsFilter) => Effect.Effect<Stats, unknown>,
  predicate: (stats: Stats) => boolean,
  filter: StatsFilter = {}
) => PluginTest.eventually(Effect.filterOrFail(stats(filter), predicate))

const storedCounters = (stored: ReadonlyArray<readonly [string, Uint8Array]>) => {
  const entry = stored.find(([key]) => key === countersKey)
  return entry === undefined ? undefined : JSON.parse(decoder.decode(entry[1]))
}

const request = (query: Record<string, string> = {}): HttpEndpoint.Request => ({
  method: "GET",
  path: "/",
  params: {},
  query,
  headers: {},
  body: ""
})

describe("package files", () => {
  it.effect(
    "plugin.json and config.schema.json agree with the code (regenerate: npm run schema -w @blackhole/plugin-analytics)",
    () =>
      Effect.gen(function* () {
        assert.deepStrictEqual(
          yield* PluginTest.packageDrift(fileURLToPath(new URL("..", import.meta.url)), definition),
          []
        )
      })
  )

  it.effect("every config field has a default", () =>
    Effect.gen(function* () {
      const config = yield* PluginConfig.decode(definition.config, {}, pluginId)
      assert.deepStrictEqual(config, { flushIntervalMillis: 1000, maxKeys: 1000, rateWindowSeconds: 60 })
      const invalid = yield* Effect.flip(
        PluginConfig.decode(definition.config, { maxKeys: 0, nope: 1 }, pluginId)
      )
      assert.deepStrictEqual(invalid.issues.map((issue) => issue.path).sort(), ["maxKeys", "nope"])
    })
  )
})

describe("counting", () => {
  it.scoped("counts per type and per source, filtered by type prefix and by source", () =>
    Effect.gen(function* () {
      const { client, recorder, stats } = yield* start()
      yield* recorder.emit("content.created", { id: 1 }, "core")
      yield* recorder.emit("content.created", { id: 2 }, "core")
      yield* recorder.emit("content.deleted", { id: 1 }, "com.example.cms")
      yield* recorder.emit("user.login", null, "core")

      const all = yield* statsWhen(stats, (s) => s.total === 4)
      assert.deepStrictEqual(
        { types: all.types, sources: all.sources, other: all.other, keys: all.keys, since: all.since },
        {
          types: {
            "content.created": { count: 2, rate: 2 },
            "content.deleted": { count: 1, rate: 1 },
            "user.login": { count: 1, rate: 1 }
          },
          sources: { "com.example.cms": { count: 1, rate: 1 }, core: { count: 3, rate: 3 } },
          other: { count: 0, rate: 0 },
          keys: 3,
          since: 0
        }
      )

      // No payload at all (what `blackhole call analytics getStats` sends) means no filter.
      assert.deepStrictEqual(yield* client(Analytics).getStats(undefined), all)

      const content = yield* stats({ typePrefix: "content." })
      assert.strictEqual(content.total, 3)
      assert.deepStrictEqual(Object.keys(content.types), ["content.created", "content.deleted"])
      assert.deepStrictEqual(content.sources, {
        "com.example.cms": { count: 1, rate: 1 },
        core: { count: 2, rate: 2 }
      })

      const fromCore = yield* stats({ source: "core", typePrefix: "content." })
      assert.strictEqual(fromCore.total, 2)
      assert.deepStrictEqual(Object.keys(fromCore.types), ["content.created"])
      assert.deepStrictEqual(Object.keys(fromCore.sources), ["core"])
    })
  )

  it.scoped("rates cover the recent window only", () =>
    Effect.gen(function* () {
      const { recorder, stats } = yield* start({ rateWindowSeconds: 60 })
      for (let i = 0; i < 6; i++) yield* recorder.emit("tick", i, "core")
      yield* statsWhen(stats, (s) => s.total === 6)

      // Six events in the first half minute of the process: six per 30 s.
      yield* TestClock.adjust("30 seconds")
      const half = yield* stats()
      assert.strictEqual(half.rate, 6 / 30)
      assert.strictEqual(half.types.tick?.rate, 6 / 30)

      // Once the window has moved past them they no longer count towards the rate; the counts stay.
      yield* TestClock.adjust("90 seconds")
      const later = yield* stats()
      assert.strictEqual(later.rate, 0)
      assert.deepStrictEqual(later.types.tick, { count: 6, rate: 0 })
    })
  )

  it.scoped("does not count events it published itself", () =>
    Effect.gen(function* () {
      const { recorder, stats } = yield* start()
      yield* recorder.emit("analytics.flushed", null, pluginId)
      yield* recorder.emit("content.created", null, "core")
      const all = yield* statsWhen(stats, (s) => s.total >= 1)
      assert.deepStrictEqual(Object.keys(all.types), ["content.created"])
      assert.deepStrictEqual(Object.keys(all.sources), ["core"])
      assert.strictEqual(all.total, 1)
    })
  )

  it.scoped("tracks at most maxKeys (type, source) pairs; later new pairs count under other", () =>
    Effect.gen(function* () {
      const { recorder, stats } = yield* start({ maxKeys: 2 })
      yield* recorder.emit("a", null, "core")
      yield* recorder.emit("b", null, "core")
      yield* recorder.emit("c", null, "core")
      yield* recorder.emit("a", null, "core")
      yield* recorder.emit("a", null, "com.example.other")
      const all = yield* statsWhen(stats, (s) => s.total === 5)
      assert.deepStrictEqual(all.types, { a: { count: 2, rate: 2 }, b: { count: 1, rate: 1 } })
      assert.deepStrictEqual(all.other, { count: 2, rate: 2 })
      assert.deepStrictEqual({ keys: all.keys, maxKeys: all.maxKeys }, { keys: 2, maxKeys: 2 })
      // `other` cannot be filtered: a filtered total holds only tracked pairs.
      assert.strictEqual((yield* stats({ typePrefix: "a" })).total, 2)
    })
  )
})

describe("storage", () => {
  it.effect("batches writes: one per interval with changes, none while idle, and one on stop", () =>
    Effect.gen(function* () {
      const recorder = yield* Effect.scoped(
        Effect.gen(function* () {
          const { recorder, stats } = yield* start({ flushIntervalMillis: 1000 })
          for (let i = 0; i < 3; i++) yield* recorder.emit("content.created", i, "core")
          yield* statsWhen(stats, (s) => s.total === 3)
          assert.deepStrictEqual(yield* recorder.writes, [], "nothing is written per event")

          yield* TestClock.adjust("1 second")
          const first = yield* PluginTest.eventually(
            Effect.filterOrFail(recorder.writes, (w) => w.length === 1)
          )
          assert.strictEqual(first[0]?.key, countersKey)
          assert.deepStrictEqual(storedCounters(yield* recorder.stored), {
            version: 1,
            since: 0,
            other: 0,
            pairs: [["content.created", "core", 3]]
          })

          yield* TestClock.adjust("5 seconds")
          assert.strictEqual((yield* recorder.writes).length, 1, "no write without changes")

          yield* recorder.emit("content.deleted", null, "core")
          yield* statsWhen(stats, (s) => s.total === 4)
          return recorder
        })
      )
      // The Scope closed (the plugin's stop): the last count was flushed without waiting for the interval.
      assert.strictEqual((yield* recorder.writes).length, 2)
      assert.deepStrictEqual(storedCounters(yield* recorder.stored)?.pairs, [
        ["content.created", "core", 3],
        ["content.deleted", "core", 1]
      ])
    })
  )

  it.scoped("restores the counters and their start time from storage", () =>
    Effect.gen(function* () {
      const snapshot = { version: 1, since: 1234, other: 1, pairs: [["content.created", "core", 5]] }
      const { recorder, stats } = yield* start(
        {},
        { storage: [[countersKey, encoder.encode(JSON.stringify(snapshot))]] }
      )
      yield* recorder.emit("content.created", null, "core")
      const all = yield* statsWhen(stats, (s) => s.total === 7)
      assert.strictEqual(all.since, 1234)
      assert.strictEqual(all.types["content.created"]?.count, 6)
      assert.strictEqual(all.other.count, 1)
    })
  )

  it.scoped("unreadable stored counters: starts from zero and says so", () =>
    Effect.gen(function* () {
      const { recorder, stats } = yield* start({}, { storage: [[countersKey, encoder.encode("{not json")]] })
      assert.strictEqual((yield* stats()).total, 0)
      const logs = yield* recorder.logs
      assert.strictEqual(logs.length, 1)
      assert.strictEqual(logs[0]?.level, "warn")
      assert.include(logs[0]?.message, "unreadable")
    })
  )

  it.scoped("a failing flush makes it degraded, and counting goes on", () =>
    Effect.gen(function* () {
      // Everything it requests but storage:write: every flush is refused.
      const { handlers, recorder, stats } = yield* start(
        {},
        { permissions: ["events:subscribe:*", "storage:read", "http:serve"] }
      )
      assert.deepStrictEqual(yield* handlers.health!, { status: "healthy" })
      yield* recorder.emit("content.created", null, "core")
      yield* statsWhen(stats, (s) => s.total === 1)
      yield* TestClock.adjust("1 second")
      const health = yield* PluginTest.eventually(
        Effect.filterOrFail(handlers.health!, (h) => h.status === "degraded")
      )
      assert.include(health.details, "storage:write")
      assert.isTrue(
        (yield* recorder.logs).some((line) => line.level === "warn" && line.message.includes("save"))
      )
      yield* recorder.emit("content.created", null, "core")
      yield* statsWhen(stats, (s) => s.total === 2)
    })
  )
})

describe("HTTP", () => {
  it.scoped("GET / answers the stats as JSON, filtered by the query", () =>
    Effect.gen(function* () {
      const { handlers, recorder, stats } = yield* start()
      assert.strictEqual(handlers.http?.path, "analytics")
      const route = handlers.http!.routes.find((r) => r.method === "GET" && r.path === "/")!
      yield* recorder.emit("content.created", null, "core")
      yield* recorder.emit("user.login", null, "core")
      yield* statsWhen(stats, (s) => s.total === 2)

      const all = yield* route.handle(request())
      assert.strictEqual(all.status, 200)
      assert.strictEqual(all.headers?.["content-type"], "application/json")
      assert.deepStrictEqual(JSON.parse(all.body ?? ""), yield* stats())

      const content = yield* route.handle(request({ typePrefix: "content." }))
      assert.deepStrictEqual(Object.keys(JSON.parse(content.body ?? "").types), ["content.created"])
    })
  )

  it.scoped("an unknown query parameter is a 400 that names the right ones", () =>
    Effect.gen(function* () {
      const { handlers } = yield* start()
      const response = yield* handlers.http!.routes[0]!.handle(request({ type: "content." }))
      assert.strictEqual(response.status, 400)
      const body = JSON.parse(response.body ?? "")
      assert.strictEqual(body._tag, "InvalidQuery")
      assert.include(body.message, "typePrefix and source")
    })
  )
})
