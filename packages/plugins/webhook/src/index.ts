/**
 * The webhook plugin: posts every event matching `events` as JSON to `url`, with retries and
 * exponential backoff, a per-request timeout, and a dead letter in its storage after the last
 * failed attempt. `sync` (the integration) and `webhook.retry` try the dead letters again.
 *
 * Deliveries wait in a bounded queue and go out one at a time, in order. When the queue is full
 * the oldest pending delivery is dropped and counted: the node never waits on a slow target and
 * memory stays bounded.
 */
import type { Event } from "@blackhole/sdk/Event"
import * as EventPattern from "@blackhole/sdk/EventPattern"
import * as Events from "@blackhole/sdk/Events"
import * as Plugin from "@blackhole/sdk/Plugin"
import * as PluginConfig from "@blackhole/sdk/PluginConfig"
import * as PluginLogger from "@blackhole/sdk/PluginLogger"
import * as PluginStorage from "@blackhole/sdk/PluginStorage"
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import { type Status, Webhook } from "./contract.js"
import * as DeadLetters from "./internal/deadLetters.js"
import { backoff, post } from "./internal/delivery.js"

const int = (min: number, max: number, description: string, fallback: number) =>
  Schema.optionalWith(
    Schema.Int.pipe(Schema.between(min, max)).annotations({ description, default: fallback }),
    { default: () => fallback }
  )

/** An absolute http(s) URL. */
export const Url = Schema.String.pipe(
  Schema.filter(
    (url) => {
      let parsed: URL
      try {
        parsed = new URL(url)
      } catch {
        return `${JSON.stringify(url)} is not an absolute URL: write it in full, e.g. "https://hooks.example.com/blackhole"`
      }
      return (
        parsed.protocol === "http:" ||
        parsed.protocol === "https:" ||
        `${JSON.stringify(url)} must use http or https (got ${parsed.protocol})`
      )
    },
    { jsonSchema: { pattern: "^[Hh][Tt][Tt][Pp][Ss]?://" } }
  )
).annotations({ description: "Where events are posted: an absolute http or https URL" })

// RFC 9110 field names; values without CR/LF. A bad header would fail every request at send time.
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
// biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
const FIELD_VALUE = /^[^\u0000-\u0008\u000a-\u001f\u007f]*$/

const Headers = Schema.Record({ key: Schema.String, value: Schema.String })
  .annotations({ description: "Extra request headers, e.g. an Authorization token the receiver checks" })
  .pipe(
    // On the whole record: a refined key schema would drop a bad name silently.
    Schema.filter((headers) =>
      Object.entries(headers).flatMap(([name, value]) => [
        ...(TOKEN.test(name)
          ? []
          : [{ path: [name], message: `${JSON.stringify(name)} is not a header name` }]),
        ...(FIELD_VALUE.test(value)
          ? []
          : [{ path: [name], message: "a header value must not contain line breaks or control characters" }])
      ])
    )
  )

/** The plugin's configuration; only `url` is required. */
export const Config = PluginConfig.make(
  Schema.Struct({
    url: Url,
    /** Event patterns to forward (`*` = everything). */
    events: Schema.optionalWith(
      Schema.Union(
        EventPattern.EventPatternString,
        Schema.NonEmptyArray(EventPattern.EventPatternString)
      ).annotations({
        description:
          'Event pattern or patterns to forward, e.g. "content.*" or ["content.*", "user.created"]',
        default: "*"
      }),
      { default: () => "*" }
    ),
    /** Attempts per event, the first included. */
    maxAttempts: int(1, 100, "Attempts per event, the first included, before it becomes a dead letter", 5),
    initialBackoffMillis: int(1, 3_600_000, "Delay before the first retry; doubles per retry", 500),
    maxBackoffMillis: int(1, 3_600_000, "Ceiling of the delay between retries", 30_000),
    timeoutMillis: int(1, 300_000, "Time allowed for one request, response included", 10_000),
    headers: Schema.optional(Headers),
    /** Pending deliveries kept in memory; beyond it the oldest is dropped and counted. */
    queueCapacity: int(
      1,
      100_000,
      "Pending deliveries kept; when full the oldest is dropped and counted",
      1000
    ),
    /** Dead letters kept in storage; beyond it the oldest are deleted and counted. */
    maxDeadLetters: int(1, 100_000, "Dead letters kept in storage; beyond it the oldest are deleted", 10_000)
  }).pipe(
    Schema.filter(
      (config) =>
        config.maxBackoffMillis >= config.initialBackoffMillis || {
          path: ["maxBackoffMillis"],
          message: `maxBackoffMillis (${config.maxBackoffMillis}) must be at least initialBackoffMillis (${config.initialBackoffMillis})`
        }
    )
  )
)

/** The manifest, as in plugin.json (a test keeps the two equal). */
export const manifest = {
  id: "dev.blackhole.webhook",
  name: "Webhook",
  version: "0.1.0",
  type: "integration",
  author: "Blackhole",
  description: "Posts matching events as JSON to a URL, with retries, backoff and dead letters",
  license: "MIT",
  // `network:connect` without a host: the target is operator config, unknown when the manifest is written.
  permissions: ["events:subscribe:*", "storage:read", "storage:write", "network:connect"],
  configuration: { $schema: "config.schema.json" },
  main: "dist/index.js",
  bundle: "dist/plugin.bundle.cjs",
  services: ["webhook"]
} as const

export default Plugin.integration({
  manifest,
  config: Config,
  program: Effect.gen(function* () {
    const config = yield* Config
    const storage = yield* PluginStorage.PluginStorage
    const logger = yield* PluginLogger.PluginLogger
    // Logged instead of the URL, which may carry credentials in its path or query.
    const host = new URL(config.url).host
    const send = post({ url: config.url, timeoutMillis: config.timeoutMillis, headers: config.headers ?? {} })
    const schedule = backoff(config)
    const deadLetters = yield* DeadLetters.make({ storage, logger, maxDeadLetters: config.maxDeadLetters })
    const queue = yield* Queue.dropping<Event>(config.queueCapacity)
    const counters = yield* Ref.make({
      delivered: 0,
      deadLettered: 0,
      dropped: 0,
      inFlight: 0,
      /** Why the latest delivery failed, until one succeeds. */
      lastFailure: Option.none<string>()
    })

    const deadLetter = (event: Event, error: string, attempts: number) =>
      Effect.zipRight(
        deadLetters.add(event, error, attempts),
        Ref.update(counters, (c) => ({
          ...c,
          deadLettered: c.deadLettered + 1,
          lastFailure: Option.some(error)
        }))
      )

    // Runs uninterruptibly but for the attempts and the waits between them: a stop interrupts
    // those, and the event becomes a dead letter instead of being lost; once the outcome is being
    // recorded, a stop waits for it.
    const deliver = (event: Event) =>
      Effect.suspend(() => {
        let attempts = 0
        const attempt = Effect.suspend(() => {
          attempts++
          return send(event)
        })
        return Effect.interruptible(
          Effect.retry(attempt, { schedule, while: (error) => error.retryable })
        ).pipe(
          Effect.matchEffect({
            onSuccess: () =>
              Ref.update(counters, (c) => ({ ...c, delivered: c.delivered + 1, lastFailure: Option.none() })),
            onFailure: (error) =>
              Effect.zipRight(
                logger.log(
                  "warn",
                  `could not deliver ${event.type} (${event.id}) to ${host} after ${attempts} attempt(s): ${error.reason}; kept as a dead letter, retry with "blackhole call webhook retry"`
                ),
                deadLetter(event, error.reason, attempts)
              )
          }),
          Effect.onInterrupt(() =>
            deadLetter(event, "not delivered: the plugin stopped during the delivery", attempts)
          )
        )
      })

    // Keeps the newest events when the target cannot keep up: drop the oldest pending one, count it.
    const enqueue = (event: Event) =>
      Effect.gen(function* () {
        if (yield* Queue.offer(queue, event)) return
        const oldest = yield* Queue.poll(queue)
        yield* Queue.offer(queue, event)
        if (Option.isNone(oldest)) return
        const { dropped } = yield* Ref.updateAndGet(counters, (c) => ({ ...c, dropped: c.dropped + 1 }))
        if (dropped === 1 || dropped % 1000 === 0) {
          yield* logger.log(
            "warn",
            `the delivery queue is full (${config.queueCapacity}): dropped the oldest pending event, ${oldest.value.type} (${oldest.value.id}); ${dropped} dropped so far. Check why ${host} is slow, or raise queueCapacity`
          )
        }
      })

    // Finalizers run in reverse: the subscription ends first, then the consumer (an interrupted
    // delivery becomes a dead letter), then what is still queued is kept as dead letters too.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        const left = yield* Queue.takeAll(queue)
        for (const event of left)
          yield* deadLetter(event, "not delivered: the plugin stopped before its turn", 0)
      })
    )
    // The consumer: one delivery at a time, in order. Only the wait for the next event is
    // interruptible here, so a taken event always reaches `deliver` and its stop handling.
    yield* Effect.uninterruptibleMask((restore) =>
      restore(Queue.take(queue)).pipe(
        Effect.tap(() => Ref.update(counters, (c) => ({ ...c, inFlight: 1 }))),
        Effect.flatMap((event) =>
          Effect.ensuring(
            deliver(event),
            Ref.update(counters, (c) => ({ ...c, inFlight: 0 }))
          )
        )
      )
    ).pipe(Effect.forever, Effect.forkScoped)
    const patterns: ReadonlyArray<string> =
      typeof config.events === "string" ? [config.events] : config.events
    const [only] = patterns
    if (patterns.length === 1 && only !== undefined) {
      yield* Events.on(only, enqueue)
    } else {
      // One subscription for several patterns, so an event two of them match is posted once.
      yield* Events.on("*", (event) =>
        patterns.some((pattern) => EventPattern.matches(pattern, event.type)) ? enqueue(event) : Effect.void
      )
    }

    const retry = (key: string | undefined) =>
      deadLetters.retry(key, send).pipe(
        Effect.tap((result) =>
          Ref.update(counters, (c) => ({
            ...c,
            delivered: c.delivered + result.delivered,
            lastFailure: result.failed === 0 && result.delivered > 0 ? Option.none() : c.lastFailure
          }))
        )
      )

    const status: Effect.Effect<Status> = Effect.gen(function* () {
      const c = yield* Ref.get(counters)
      // Negative while the consumer waits on an empty queue.
      const queued = Math.max(0, yield* Queue.size(queue))
      return {
        pending: queued + c.inFlight,
        queueCapacity: config.queueCapacity,
        delivered: c.delivered,
        deadLettered: c.deadLettered,
        dropped: c.dropped,
        deadLetters: yield* deadLetters.count,
        deadLettersDiscarded: yield* deadLetters.discarded
      }
    })

    yield* PluginLogger.info(`forwarding ${patterns.join(", ")} to ${host}`)
    return {
      integration: {
        kind: "webhook",
        sync: retry(undefined).pipe(
          Effect.flatMap((result) =>
            logger.log(
              "info",
              `sync: ${result.delivered} dead letter(s) delivered, ${result.failed} failed, ${result.remaining} left`
            )
          ),
          // Only a retry of one key can miss.
          Effect.catchTag("DeadLetterNotFound", () => Effect.void)
        )
      },
      services: [
        ServiceContract.implement(Webhook, {
          deadLetters: (payload) => deadLetters.list(payload?.limit ?? 100),
          retry: (payload) => retry(payload?.key),
          status: () => status
        })
      ],
      health: Effect.map(Ref.get(counters), ({ lastFailure }) =>
        Option.match(lastFailure, {
          onNone: () => ({ status: "healthy" as const }),
          onSome: (reason) => ({
            status: "degraded" as const,
            details: `the latest delivery to ${host} failed (${reason}); failed events are kept as dead letters: retry them with "blackhole call webhook retry"`
          })
        })
      )
    }
  })
})
