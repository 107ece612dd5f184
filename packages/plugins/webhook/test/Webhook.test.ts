/**
 * The webhook plugin on the SDK's in-memory test kit (no node, no subprocess), posting to a real
 * HTTP server on 127.0.0.1. Real time: `it.scopedLive`, short backoffs, bounded polling.
 */
import { fileURLToPath } from "node:url"
import { Event } from "@blackhole/sdk/Event"
import * as PluginConfig from "@blackhole/sdk/PluginConfig"
import { PluginTest } from "@blackhole/sdk/testing"
import { assert, describe, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"
import { DeadLetterNotFound, Webhook } from "../src/contract.js"
import definition from "../src/index.js"
import { backoff } from "../src/internal/delivery.js"
import * as Server from "./server.js"

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const pluginId = "dev.blackhole.webhook"

/** Fast retries, so a test takes milliseconds of backoff. */
const fast = { initialBackoffMillis: 10, maxBackoffMillis: 40, timeoutMillis: 5000 }

/** Starts the plugin with exactly the permissions its manifest requests. */
const start = (config: Record<string, unknown>, options: PluginTest.RunOptions = {}) =>
  Effect.map(PluginTest.run(definition, { permissions: "manifest", config, ...options }), (running) => ({
    ...running,
    webhook: running.client(Webhook)
  }))

type Recorder = PluginTest.Running<"integration">["recorder"]

/** The dead letters in the plugin's storage, parsed. */
const deadLettersIn = (recorder: Recorder) =>
  Effect.map(recorder.stored, (stored) =>
    stored
      .filter(([key]) => key.startsWith("dead-letter/"))
      .map(([key, value]) => ({ key, ...JSON.parse(decoder.decode(value)) }))
  )

const deadLettersWhen = (recorder: Recorder, n: number) =>
  Server.eventually(
    Effect.map(deadLettersIn(recorder), (letters) => (letters.length === n ? letters : undefined)),
    `${n} dead letter(s) stored`
  )

const receivedWhen = (server: Server.TestServer, n: number) =>
  Server.eventually(
    Effect.sync(() => (server.received.length >= n ? server.received : undefined)),
    `${n} request(s) received`
  )

describe("package files", () => {
  it.effect(
    "plugin.json and config.schema.json agree with the code (regenerate: npm run schema -w @blackhole/plugin-webhook)",
    () =>
      Effect.gen(function* () {
        assert.deepStrictEqual(
          yield* PluginTest.packageDrift(fileURLToPath(new URL("..", import.meta.url)), definition),
          []
        )
      })
  )

  it.effect("config: url is required, the rest has defaults, and mistakes say what to write", () =>
    Effect.gen(function* () {
      const decode = (raw: unknown) => PluginConfig.decode(definition.config, raw, pluginId)
      assert.deepStrictEqual(yield* decode({ url: "https://hooks.example.com/x" }), {
        url: "https://hooks.example.com/x",
        events: "*",
        maxAttempts: 5,
        initialBackoffMillis: 500,
        maxBackoffMillis: 30_000,
        timeoutMillis: 10_000,
        queueCapacity: 1000,
        maxDeadLetters: 10_000
      })
      const messages = (raw: unknown) =>
        Effect.map(Effect.flip(decode(raw)), (error) =>
          error.issues.map((issue) => `${issue.path}: ${issue.message}`)
        )
      assert.deepStrictEqual(
        (yield* Effect.flip(decode({}))).issues.map((issue) => issue.path),
        ["url"]
      )
      assert.include((yield* messages({ url: "hooks.example.com" }))[0], "not an absolute URL")
      assert.include((yield* messages({ url: "ftp://hooks.example.com" }))[0], "must use http or https")
      assert.include((yield* messages({ url: "http://h", events: "content.**" }))[0], "events")
      assert.include(
        (yield* messages({ url: "http://h", headers: { "bad name": "x" } }))[0],
        "not a header name"
      )
      assert.include(
        (yield* messages({ url: "http://h", initialBackoffMillis: 1000, maxBackoffMillis: 10 }))[0],
        "maxBackoffMillis (10) must be at least initialBackoffMillis (1000)"
      )
    })
  )

  it.effect("backoff: doubling from the initial delay, capped, for maxAttempts attempts", () =>
    Effect.gen(function* () {
      const attempts: Array<number> = []
      const failing = Effect.flatMap(Clock.currentTimeMillis, (now) => {
        attempts.push(now)
        return Effect.fail("down")
      })
      const schedule = backoff({ maxAttempts: 6, initialBackoffMillis: 100, maxBackoffMillis: 400 })
      const fiber = yield* Effect.fork(Effect.retry(failing, schedule))
      yield* TestClock.adjust("1 minute")
      assert.strictEqual(yield* Effect.flip(Fiber.join(fiber)), "down")
      // Delays 100, 200, 400, 400, 400.
      assert.deepStrictEqual(attempts, [0, 100, 300, 700, 1100, 1500])
    })
  )
})

describe("delivery", () => {
  it.scopedLive("posts each matching event as JSON, with its headers and the configured ones", () =>
    Effect.gen(function* () {
      const server = yield* Server.make(() => 200)
      const { recorder, webhook } = yield* start({
        ...fast,
        url: server.url,
        events: "content.*",
        headers: { authorization: "Bearer s3cret" }
      })
      yield* recorder.emit("content.created", { id: 1 }, "core")
      yield* recorder.emit("user.login", { who: "x" }, "core")
      yield* recorder.emit("content.deleted", { id: 1 }, "com.example.cms")
      yield* receivedWhen(server, 2)

      // In order, one at a time: user.login would have come between the two.
      const [created, deleted] = Server.bodies(server)
      assert.deepStrictEqual(
        { type: created?.type, source: created?.source, data: created?.data },
        { type: "content.created", source: "core", data: { id: 1 } }
      )
      assert.deepStrictEqual(
        { type: deleted?.type, source: deleted?.source, data: deleted?.data },
        { type: "content.deleted", source: "com.example.cms", data: { id: 1 } }
      )
      assert.isString(created?.id)
      assert.isNumber(created?.timestamp)
      const request = server.received[0]!
      assert.strictEqual(request.method, "POST")
      assert.strictEqual(request.url, "/hook")
      assert.strictEqual(request.headers["content-type"], "application/json")
      assert.strictEqual(request.headers["x-blackhole-event"], "content.created")
      assert.strictEqual(request.headers["x-blackhole-delivery"], created?.id)
      assert.strictEqual(request.headers.authorization, "Bearer s3cret")

      const status = yield* Server.eventually(
        Effect.map(webhook.status(), (s) => (s.delivered === 2 ? s : undefined)),
        "two delivered"
      )
      assert.deepStrictEqual(
        { ...status, pending: 0 },
        {
          pending: 0,
          queueCapacity: 1000,
          delivered: 2,
          deadLettered: 0,
          dropped: 0,
          deadLetters: 0,
          deadLettersDiscarded: 0
        }
      )
      assert.deepStrictEqual(yield* deadLettersIn(recorder), [])
    })
  )

  it.scopedLive("several patterns: an event matching two of them is posted once", () =>
    Effect.gen(function* () {
      const server = yield* Server.make(() => 200)
      const { recorder } = yield* start({
        ...fast,
        url: server.url,
        events: ["content.*", "*.created", "audit.x"]
      })
      yield* recorder.emit("content.created", null, "core")
      yield* recorder.emit("user.deleted", null, "core")
      yield* recorder.emit("audit.x", null, "core")
      yield* receivedWhen(server, 2)
      assert.deepStrictEqual(
        Server.bodies(server).map((event) => event.type),
        ["content.created", "audit.x"]
      )
    })
  )

  it.scopedLive("retries with backoff until the target accepts", () =>
    Effect.gen(function* () {
      const server = yield* Server.make(Server.failFirst(2, 503))
      const { handlers, recorder, webhook } = yield* start({ ...fast, url: server.url, maxAttempts: 5 })
      yield* recorder.emit("content.created", { n: 1 }, "core")
      yield* Server.eventually(
        Effect.map(webhook.status(), (s) => (s.delivered === 1 ? s : undefined)),
        "delivered after the retries"
      )
      assert.strictEqual(server.received.length, 3)
      const ids = new Set(Server.bodies(server).map((event) => event.id))
      assert.strictEqual(ids.size, 1, "the same event three times")
      assert.deepStrictEqual(yield* deadLettersIn(recorder), [])
      assert.deepStrictEqual(yield* handlers.health!, { status: "healthy" })
    })
  )

  it.scopedLive("after the last failed attempt it keeps a dead letter, which retry delivers later", () =>
    Effect.gen(function* () {
      const server = yield* Server.make(() => 500)
      const { handlers, recorder, webhook } = yield* start({ ...fast, url: server.url, maxAttempts: 3 })
      yield* recorder.emit("content.created", { n: 1 }, "core")

      const [letter] = yield* deadLettersWhen(recorder, 1)
      assert.strictEqual(server.received.length, 3)
      assert.match(letter.key, /^dead-letter\/\d{13}-.+$/)
      assert.isTrue(letter.key.endsWith(`-${letter.event.id}`))
      assert.deepStrictEqual(
        { type: letter.event.type, data: letter.event.data, attempts: letter.attempts, error: letter.error },
        { type: "content.created", data: { n: 1 }, attempts: 3, error: "HTTP 500 from the target" }
      )
      const health = yield* handlers.health!
      assert.strictEqual(health.status, "degraded")
      assert.include(health.details, "blackhole call webhook retry")
      assert.isTrue(
        (yield* recorder.logs).some((line) => line.level === "warn" && line.message.includes("dead letter"))
      )

      const listed = yield* webhook.deadLetters({})
      assert.strictEqual(listed.total, 1)
      assert.strictEqual(listed.items[0]?.key, letter.key)
      assert.instanceOf(listed.items[0]?.event, Event)

      // Still down: kept, with one more attempt and the time of this retry.
      // No payload (what `blackhole call webhook retry` sends): all of them.
      assert.deepStrictEqual(yield* webhook.retry(undefined), { delivered: 0, failed: 1, remaining: 1 })
      const [again] = yield* deadLettersIn(recorder)
      assert.strictEqual(again.attempts, 4)
      assert.isNumber(again.lastAttemptAt)

      server.answer(() => 200)
      assert.deepStrictEqual(yield* webhook.retry({ key: letter.key }), {
        delivered: 1,
        failed: 0,
        remaining: 0
      })
      assert.deepStrictEqual(yield* deadLettersIn(recorder), [])
      assert.strictEqual(Server.bodies(server).at(-1)?.id, letter.event.id)
      assert.deepStrictEqual(yield* handlers.health!, { status: "healthy" })

      const missing = yield* Effect.flip(webhook.retry({ key: letter.key }))
      assert.instanceOf(missing, DeadLetterNotFound)
      assert.include(missing.message, "deadLetters")
    })
  )

  it.scopedLive("sync retries every dead letter, including ones kept before a restart", () =>
    Effect.gen(function* () {
      const server = yield* Server.make(() => 200)
      const old = new Event({
        id: "e-old",
        type: "content.created",
        source: "core",
        timestamp: 1,
        data: { n: 0 }
      })
      const record = { event: { ...old }, error: "HTTP 503 from the target", attempts: 5, failedAt: 1000 }
      const { handlers, recorder, webhook } = yield* start(
        { ...fast, url: server.url },
        { storage: [["dead-letter/0000000001000-e-old", encoder.encode(JSON.stringify(record))]] }
      )
      assert.strictEqual((yield* webhook.status()).deadLetters, 1)
      yield* handlers.integration.sync
      assert.deepStrictEqual(yield* deadLettersIn(recorder), [])
      assert.deepStrictEqual(Server.bodies(server), [
        { id: "e-old", type: "content.created", source: "core", timestamp: 1, data: { n: 0 } }
      ])
      assert.isTrue(
        (yield* recorder.logs).some((line) => line.message.startsWith("sync: 1 dead letter(s) delivered"))
      )
    })
  )

  it.scopedLive("a refused request (4xx) is not retried", () =>
    Effect.gen(function* () {
      const server = yield* Server.make(() => 404)
      const { recorder } = yield* start({ ...fast, url: server.url, maxAttempts: 5 })
      yield* recorder.emit("content.created", null, "core")
      const [letter] = yield* deadLettersWhen(recorder, 1)
      assert.strictEqual(letter.attempts, 1)
      assert.include(letter.error, "HTTP 404")
      assert.include(letter.error, "check url")
      assert.strictEqual(server.received.length, 1)
    })
  )

  it.scopedLive("a request without an answer times out; a refused connection is retried too", () =>
    Effect.gen(function* () {
      const server = yield* Server.make(() => "hang")
      const hanging = yield* start({ ...fast, url: server.url, timeoutMillis: 100, maxAttempts: 2 })
      yield* hanging.recorder.emit("content.created", null, "core")
      const [timedOut] = yield* deadLettersWhen(hanging.recorder, 1)
      assert.deepStrictEqual(
        { attempts: timedOut.attempts, error: timedOut.error },
        { attempts: 2, error: "no response within 100 ms" }
      )
      assert.strictEqual(server.received.length, 2)

      const port = yield* Server.closedPort
      const refused = yield* start({ ...fast, url: `http://127.0.0.1:${port}/hook`, maxAttempts: 2 })
      yield* refused.recorder.emit("content.created", null, "core")
      const [unreachable] = yield* deadLettersWhen(refused.recorder, 1)
      assert.strictEqual(unreachable.attempts, 2)
      assert.include(unreachable.error, "ECONNREFUSED")
    })
  )
})

describe("bounds and stop", () => {
  it.scopedLive("a full queue drops the oldest pending delivery and counts it", () =>
    Effect.gen(function* () {
      // The first request waits, so the consumer is stuck on event 1 while 2..5 arrive.
      const server = yield* Server.make((n) => (n === 1 ? "hang" : 200))
      const { recorder, webhook } = yield* start({ ...fast, url: server.url, queueCapacity: 2 })
      yield* recorder.emit("content.created", { n: 1 }, "core")
      yield* receivedWhen(server, 1)
      for (let n = 2; n <= 5; n++) yield* recorder.emit("content.created", { n }, "core")
      const status = yield* Server.eventually(
        Effect.map(webhook.status(), (s) => (s.dropped === 2 ? s : undefined)),
        "two dropped"
      )
      assert.strictEqual(status.pending, 3, "two queued, one in flight")
      assert.isTrue(
        (yield* recorder.logs).some((line) => line.level === "warn" && line.message.includes("queue is full"))
      )

      server.release()
      yield* receivedWhen(server, 3)
      assert.deepStrictEqual(
        Server.bodies(server).map((event) => (event.data as { n: number }).n),
        [1, 4, 5]
      )
    })
  )

  it.scopedLive("keeps at most maxDeadLetters, deleting the oldest", () =>
    Effect.gen(function* () {
      const server = yield* Server.make(() => 500)
      const { recorder, webhook } = yield* start({
        ...fast,
        url: server.url,
        maxAttempts: 1,
        maxDeadLetters: 2
      })
      for (let n = 1; n <= 3; n++) yield* recorder.emit("content.created", { n }, "core")
      yield* Server.eventually(
        Effect.map(webhook.status(), (s) => (s.deadLettered === 3 ? s : undefined)),
        "three dead-lettered"
      )
      const letters = yield* deadLettersIn(recorder)
      assert.deepStrictEqual(
        letters.map((letter) => letter.event.data.n),
        [2, 3]
      )
      const status = yield* webhook.status()
      assert.deepStrictEqual(
        { kept: status.deadLetters, discarded: status.deadLettersDiscarded },
        { kept: 2, discarded: 1 }
      )
    })
  )

  it.scopedLive("a stop keeps what was not delivered as dead letters", () =>
    Effect.gen(function* () {
      const server = yield* Server.make(() => "hang")
      const recorder = yield* Effect.scoped(
        Effect.gen(function* () {
          const { recorder, webhook } = yield* start({ ...fast, url: server.url })
          for (let n = 1; n <= 3; n++) yield* recorder.emit("content.created", { n }, "core")
          yield* receivedWhen(server, 1)
          yield* Server.eventually(
            Effect.map(webhook.status(), (s) => (s.pending === 3 ? s : undefined)),
            "one in flight, two queued"
          )
          return recorder
        })
      )
      const letters = yield* deadLettersIn(recorder)
      assert.deepStrictEqual(
        letters.map((letter) => [letter.event.data.n, letter.attempts, letter.error]).sort(),
        [
          [1, 1, "not delivered: the plugin stopped during the delivery"],
          [2, 0, "not delivered: the plugin stopped before its turn"],
          [3, 0, "not delivered: the plugin stopped before its turn"]
        ]
      )
    })
  )
})
