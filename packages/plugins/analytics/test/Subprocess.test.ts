/**
 * The built plugin (dist/, as `main` says) in its own process, hosted by a whole in-memory node:
 * the events come from the node's bus, the stats are read through the mesh and the node's route
 * table, and the counters from the host's storage.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { EventBus } from "@blackhole/core/EventBus"
import * as NodeTest from "@blackhole/core/NodeTest"
import { PluginManager } from "@blackhole/core/PluginManager"
import { PluginRoutes } from "@blackhole/core/PluginRoutes"
import * as Principal from "@blackhole/core/Principal"
import { ServiceRegistry } from "@blackhole/core/ServiceRegistry"
import { Storage } from "@blackhole/core/Storage"
import * as SubprocessLoader from "@blackhole/core/SubprocessLoader"
import type * as Errors from "@blackhole/sdk/Errors"
import * as PluginManifest from "@blackhole/sdk/PluginManifest"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { Analytics, type Stats } from "../src/contract.js"

const directory = fileURLToPath(new URL("..", import.meta.url))
const pluginId = "dev.blackhole.analytics"
const namespace = `plugin/${pluginId}`
const decoder = new TextDecoder()

/** Polls `probe` until it yields a value (bounded: 10 s). */
const eventually = <A, E, R>(probe: Effect.Effect<A | undefined, E, R>, what: string) =>
  Effect.gen(function* () {
    for (let i = 0; i < 500; i++) {
      const value = yield* probe
      if (value !== undefined) return value
      yield* Effect.sleep("20 millis")
    }
    return yield* Effect.dieMessage(`not reached within 10 s: ${what}`)
  })

/** Registers the plugin's directory to run as a subprocess, as discovery would. */
const register = (config: unknown) =>
  Effect.gen(function* () {
    const manifest = yield* PluginManifest.decodeJson(
      fs.readFileSync(path.join(directory, "plugin.json"), "utf8"),
      directory
    )
    const manager = yield* PluginManager
    yield* manager.registerWith(manifest, SubprocessLoader.make({ directory, manifest }), { config })
    return manager
  })

const storedCounters = Effect.gen(function* () {
  const storage = yield* Storage
  const value = yield* storage.retrieve(namespace, "counters")
  return Option.isNone(value)
    ? undefined
    : (JSON.parse(decoder.decode(value.value)) as { since: number; pairs: Array<[string, string, number]> })
})

const statsWhen = (predicate: (stats: Stats) => boolean, what: string) =>
  Effect.gen(function* () {
    const client = (yield* ServiceRegistry).client(Principal.operator, Analytics)
    return yield* eventually(
      Effect.map(client.getStats({ typePrefix: "content." }), (stats) =>
        predicate(stats) ? stats : undefined
      ),
      what
    )
  })

const granted = NodeTest.layer({ grants: { [pluginId]: ["http:serve"] } })

describe("analytics in its own process", () => {
  it.scopedLive(
    "counts the node's events, serves them on the mesh and at GET /api/v1/analytics, flushes",
    () =>
      Effect.gen(function* () {
        const bus = yield* EventBus
        const routes = yield* PluginRoutes
        const manager = yield* register({ flushIntervalMillis: 50 })
        yield* manager.start(pluginId)
        const info = yield* manager.get(pluginId)
        assert.strictEqual(info.state, "running")
        assert.strictEqual(info.loader, "subprocess")
        assert.isNumber(info.pid)
        assert.notStrictEqual(info.pid, process.pid)
        assert.sameMembers(
          [...info.granted],
          ["events:subscribe:*", "storage:read", "storage:write", "http:serve"]
        )

        for (let n = 0; n < 3; n++)
          yield* bus.publish({ type: "content.created", source: "core", data: { n } })
        yield* bus.publish({ type: "content.deleted", source: "com.example.cms", data: null })

        const stats = yield* statsWhen((s) => s.total === 4, "4 content events counted")
        assert.deepStrictEqual(
          Object.fromEntries(Object.entries(stats.types).map(([type, counter]) => [type, counter.count])),
          { "content.created": 3, "content.deleted": 1 }
        )
        assert.deepStrictEqual(
          Object.fromEntries(
            Object.entries(stats.sources).map(([source, counter]) => [source, counter.count])
          ),
          { "com.example.cms": 1, core: 3 }
        )

        // As `blackhole call analytics getStats` sends it: no payload at all means no filter.
        const bare = (yield* (yield* ServiceRegistry).call(
          Principal.operator,
          "analytics",
          "getStats",
          undefined
        )) as Stats
        assert.isAtLeast(bare.total, 4)
        assert.strictEqual(bare.types["content.created"]?.count, 3)

        // The node mounted its route; the request goes to the plugin's process.
        const resolved = routes.resolve("GET", "analytics")
        assert.isDefined(resolved)
        assert.isTrue(resolved !== undefined && "route" in resolved)
        if (resolved === undefined || !("route" in resolved)) return
        assert.strictEqual(resolved.pluginId, pluginId)
        const response = yield* resolved.route.handle({
          method: "GET",
          path: resolved.path,
          params: resolved.params,
          query: { source: "com.example.cms" },
          headers: {},
          body: ""
        })
        assert.strictEqual(response.status, 200)
        const body = JSON.parse(response.body ?? "") as Stats
        assert.deepStrictEqual(Object.keys(body.types), ["content.deleted"])
        assert.strictEqual(body.types["content.deleted"]?.count, 1)

        // Batched writes reach the host's storage, in the plugin's namespace.
        const saved = yield* eventually(
          Effect.map(storedCounters, (counters) =>
            counters?.pairs.some(
              ([type, source, count]) => type === "content.created" && source === "core" && count === 3
            )
              ? counters
              : undefined
          ),
          "the counters flushed to storage"
        )
        assert.strictEqual(saved.since, stats.since)
      }).pipe(Effect.provide(granted))
  )

  it.scopedLive("flushes on stop, and a new process restores the counters", () =>
    Effect.gen(function* () {
      const bus = yield* EventBus
      const routes = yield* PluginRoutes
      // An interval longer than the test: only the stop writes.
      const manager = yield* register({ flushIntervalMillis: 3_600_000 })
      yield* manager.start(pluginId)
      const firstPid = (yield* manager.get(pluginId)).pid
      yield* bus.publish({ type: "content.created", source: "core", data: null })
      yield* bus.publish({ type: "content.created", source: "core", data: null })
      const before = yield* statsWhen((s) => s.total === 2, "2 content events counted")
      assert.isUndefined(yield* storedCounters, "nothing written before the interval or the stop")

      yield* manager.stop(pluginId)
      assert.isUndefined(routes.resolve("GET", "analytics"), "unmounted while stopped")
      const saved = yield* storedCounters
      assert.deepStrictEqual(
        saved?.pairs.filter(([type]) => type.startsWith("content.")),
        [["content.created", "core", 2]]
      )

      yield* manager.start(pluginId)
      const info = yield* manager.get(pluginId)
      assert.notStrictEqual(info.pid, firstPid)
      yield* bus.publish({ type: "content.created", source: "core", data: null })
      const after = yield* statsWhen((s) => s.total === 3, "restored 2 + 1 new")
      assert.strictEqual(after.since, before.since)
      assert.strictEqual(after.types["content.created"]?.count, 3)
    }).pipe(Effect.provide(granted))
  )

  it.scopedLive(
    "without the operator's http:serve grant it does not start, and names the missing grant",
    () =>
      Effect.gen(function* () {
        const manager = yield* register({})
        const error = yield* Effect.flip(manager.start(pluginId))
        assert.strictEqual(error._tag, "MissingGrants")
        assert.deepStrictEqual((error as Errors.MissingGrants).missing, ["http:serve"])
        assert.include(error.message, `plugins.grants."${pluginId}"`)
        const info = yield* manager.get(pluginId)
        assert.strictEqual(info.state, "failed")
        assert.strictEqual(info.pid, null)
      }).pipe(Effect.provide(NodeTest.layer()))
  )
})
