/**
 * The analytics plugin: counts every event on the bus per type and per source, with recent
 * rates, and serves the numbers on the mesh (`analytics.getStats`) and over HTTP
 * (`GET /api/v1/analytics`).
 *
 * Counting happens in memory; the counters are written to the plugin's storage as one value
 * every `flushIntervalMillis` and when the plugin stops (the original design's batching advice),
 * so a crash loses at most one interval and storage sees one write per interval, not per event.
 */
import * as Events from "@blackhole/sdk/Events"
import * as HttpEndpoint from "@blackhole/sdk/HttpEndpoint"
import * as Plugin from "@blackhole/sdk/Plugin"
import * as PluginConfig from "@blackhole/sdk/PluginConfig"
import * as PluginLogger from "@blackhole/sdk/PluginLogger"
import * as PluginStorage from "@blackhole/sdk/PluginStorage"
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import { Analytics, Stats, StatsFilter } from "./contract.js"
import { Snapshot, Tally } from "./internal/tally.js"

const between = (min: number, max: number, description: string, fallback: number) =>
  Schema.optionalWith(
    Schema.Int.pipe(Schema.between(min, max)).annotations({ description, default: fallback }),
    { default: () => fallback }
  )

/** The plugin's configuration; every field has a default. */
export const Config = PluginConfig.make(
  Schema.Struct({
    /** How often the counters are written to storage; a crash loses at most this much counting. */
    flushIntervalMillis: between(
      10,
      3_600_000,
      "Milliseconds between writes of the counters to storage (a crash loses at most one interval)",
      1000
    ),
    /** Distinct (type, source) pairs tracked; events of further pairs are counted under `other`. */
    maxKeys: between(
      1,
      10_000,
      "Distinct (event type, source) pairs tracked; events of further pairs are counted under other",
      1000
    ),
    /** The window of the events/second rates. */
    rateWindowSeconds: between(1, 3600, "Seconds of recent history the events/second rates cover", 60)
  })
)

/** This plugin's id; the events it publishes itself (none today) are not counted. */
export const pluginId = "dev.blackhole.analytics"

/** The manifest, as in plugin.json (a test keeps the two equal). */
export const manifest = {
  id: pluginId,
  name: "Analytics",
  version: "0.1.0",
  type: "service",
  author: "Blackhole",
  description:
    "Counts events per type and per source, with recent rates; serves them on the mesh and over HTTP",
  license: "MIT",
  permissions: ["events:subscribe:*", "storage:read", "storage:write", "http:serve"],
  configuration: { $schema: "config.schema.json" },
  main: "dist/index.js",
  bundle: "dist/plugin.bundle.cjs",
  services: ["analytics"]
} as const

/** The storage key of the counters. */
export const countersKey = "counters"

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const SnapshotJson = Schema.parseJson(Snapshot)
const encodeSnapshot = Schema.encodeSync(SnapshotJson)
const decodeSnapshot = Schema.decodeUnknownEither(SnapshotJson)
const encodeStats = Schema.encodeSync(Stats)
const decodeQuery = Schema.decodeUnknownEither(StatsFilter, { errors: "all", onExcessProperty: "error" })

const errorMessage = (error: unknown): string =>
  typeof error === "object" && error !== null && "message" in error ? String(error.message) : String(error)

export default Plugin.service({
  manifest,
  config: Config,
  program: Effect.gen(function* () {
    const config = yield* Config
    const storage = yield* PluginStorage.PluginStorage
    const logger = yield* PluginLogger.PluginLogger
    const startedAt = yield* Clock.currentTimeMillis
    const options = { maxKeys: config.maxKeys, windowSeconds: config.rateWindowSeconds, startedAt }

    const stored = yield* storage.retrieve(countersKey)
    const tally = Option.match(stored, {
      onNone: () => Either.right(Tally.empty(options)),
      onSome: (bytes) =>
        Either.map(decodeSnapshot(decoder.decode(bytes)), (snapshot) => Tally.restore(snapshot, options))
    })
    if (Either.isLeft(tally)) {
      yield* PluginLogger.warn(
        `the stored counters (key "${countersKey}") are unreadable, so counting starts from zero and the next flush replaces them; to keep the old value, copy it out of storage namespace plugin/${pluginId} before that`,
        { reason: ParseResult.TreeFormatter.formatErrorSync(tally.left) }
      )
    }
    const counters = Either.getOrElse(tally, () => Tally.empty(options))

    // What the last flush saved (a `version` of the tally), and why the last one failed, if it did.
    const saved = yield* Ref.make<{ readonly version: number; readonly error: string | undefined }>({
      version: counters.version,
      error: undefined
    })
    // Uninterruptible: a stop waits for a write in flight instead of abandoning it half-way.
    const flush = Effect.uninterruptible(
      Effect.gen(function* () {
        const last = yield* Ref.get(saved)
        // Read together, with no yield between: the version saved is exactly the snapshot's.
        const version = counters.version
        if (last.version === version) return
        const snapshot = counters.snapshot()
        yield* storage.store(countersKey, encoder.encode(encodeSnapshot(snapshot)))
        yield* Ref.set(saved, { version, error: undefined })
      }).pipe(
        Effect.tapError((error) =>
          Effect.zipRight(
            Ref.update(saved, (state) => ({ ...state, error: errorMessage(error) })),
            logger.log("warn", `could not save the counters, retrying in ${config.flushIntervalMillis} ms`, {
              reason: errorMessage(error)
            })
          )
        )
      )
    )

    // Added before the subscription and the flusher, so it runs after both have stopped: the
    // final flush sees every event counted.
    yield* Effect.addFinalizer(() => Effect.ignore(flush))
    yield* flush.pipe(
      Effect.ignore,
      Effect.repeat(Schedule.spaced(Duration.millis(config.flushIntervalMillis))),
      Effect.forkScoped
    )
    yield* Events.on("*", (event) =>
      event.source === pluginId
        ? Effect.void
        : Effect.flatMap(Clock.currentTimeMillis, (now) =>
            Effect.sync(() => counters.record(event.type, event.source, now))
          )
    )

    const getStats = (filter: StatsFilter): Effect.Effect<Stats> =>
      Effect.map(Clock.currentTimeMillis, (now) => counters.stats(filter, now))

    return {
      services: [ServiceContract.implement(Analytics, { getStats: (filter) => getStats(filter ?? {}) })],
      http: HttpEndpoint.make("analytics", [
        HttpEndpoint.get("/", (request) =>
          Either.match(decodeQuery(request.query), {
            onLeft: (error) =>
              Effect.succeed(
                HttpEndpoint.json(
                  {
                    _tag: "InvalidQuery",
                    message: `the only query parameters are typePrefix and source (e.g. ?typePrefix=content.&source=core): ${ParseResult.TreeFormatter.formatErrorSync(error)}`
                  },
                  400
                )
              ),
            onRight: (filter) =>
              Effect.map(getStats(filter), (stats) => HttpEndpoint.json(encodeStats(stats)))
          })
        )
      ]),
      health: Effect.map(Ref.get(saved), ({ error }) =>
        error === undefined
          ? { status: "healthy" as const }
          : {
              status: "degraded" as const,
              details: `the counters could not be saved (${error}); retrying every ${config.flushIntervalMillis} ms, and counting goes on in memory`
            }
      )
    }
  })
})
