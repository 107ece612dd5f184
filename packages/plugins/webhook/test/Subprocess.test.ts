/**
 * The built plugin (dist/, as `main` says) in its own process, hosted by a whole in-memory node,
 * posting to a real HTTP server on 127.0.0.1: events come from the node's bus, dead letters are
 * read from the host's storage, and `sync` is called through the node's plugin manager.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { EventBus } from "@blackhole/core/EventBus"
import * as NodeTest from "@blackhole/core/NodeTest"
import { PluginManager } from "@blackhole/core/PluginManager"
import * as Principal from "@blackhole/core/Principal"
import { ServiceRegistry } from "@blackhole/core/ServiceRegistry"
import { Storage } from "@blackhole/core/Storage"
import * as SubprocessLoader from "@blackhole/core/SubprocessLoader"
import type * as Errors from "@blackhole/sdk/Errors"
import * as PluginManifest from "@blackhole/sdk/PluginManifest"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { Webhook } from "../src/contract.js"
import * as Server from "./server.js"

const directory = fileURLToPath(new URL("..", import.meta.url))
const pluginId = "dev.blackhole.webhook"
const namespace = `plugin/${pluginId}`
const decoder = new TextDecoder()

/** Registers the plugin's directory to run as a subprocess, as discovery would, and starts it. */
const start = (config: unknown) =>
  Effect.gen(function* () {
    const manifest = yield* PluginManifest.decodeJson(
      fs.readFileSync(path.join(directory, "plugin.json"), "utf8"),
      directory
    )
    const manager = yield* PluginManager
    yield* manager.registerWith(manifest, SubprocessLoader.make({ directory, manifest }), { config })
    yield* manager.start(pluginId)
    return manager
  })

/** The dead letters in the host's storage, in the plugin's namespace. */
const hostDeadLetters = Effect.gen(function* () {
  const storage = yield* Storage
  const keys = yield* storage.list(namespace, "dead-letter/")
  return yield* Effect.forEach(keys, (key) =>
    Effect.map(storage.retrieve(namespace, key), (value) => ({
      key,
      ...JSON.parse(decoder.decode(Option.getOrThrow(value)))
    }))
  )
})

const granted = NodeTest.layer({ grants: { [pluginId]: ["network:connect"] } })
const fast = { initialBackoffMillis: 20, maxBackoffMillis: 100, timeoutMillis: 5000 }

describe("webhook in its own process", () => {
  it.scopedLive("posts the node's events to a real server, retrying the failed requests", () =>
    Effect.gen(function* () {
      const server = yield* Server.make(Server.failFirst(2, 503))
      const bus = yield* EventBus
      const manager = yield* start({ ...fast, url: server.url, events: "content.*", maxAttempts: 5 })
      const info = yield* manager.get(pluginId)
      assert.strictEqual(info.state, "running")
      assert.strictEqual(info.loader, "subprocess")
      assert.notStrictEqual(info.pid, process.pid)
      assert.sameMembers(
        [...info.granted],
        ["events:subscribe:*", "storage:read", "storage:write", "network:connect"]
      )

      yield* bus.publish({ type: "user.login", source: "core", data: null })
      yield* bus.publish({ type: "content.created", source: "com.example.cms", data: { id: "c1" } })
      yield* Server.eventually(
        Effect.sync(() => (server.received.length >= 3 ? true : undefined)),
        "three requests: two refused, one accepted"
      )
      const bodies = Server.bodies(server)
      assert.deepStrictEqual(
        bodies.map((event) => [event.type, event.source, event.data]),
        Array.from({ length: 3 }, () => ["content.created", "com.example.cms", { id: "c1" }])
      )
      assert.strictEqual(new Set(bodies.map((event) => event.id)).size, 1)

      const client = (yield* ServiceRegistry).client(Principal.operator, Webhook)
      const status = yield* Server.eventually(
        Effect.map(client.status(), (s) => (s.delivered === 1 ? s : undefined)),
        "delivered, as the plugin reports it"
      )
      assert.strictEqual(status.deadLettered, 0)
      assert.deepStrictEqual(yield* hostDeadLetters, [])
    }).pipe(Effect.provide(granted))
  )

  it.scopedLive("keeps a dead letter in the node's storage after the last attempt; sync delivers it", () =>
    Effect.gen(function* () {
      const server = yield* Server.make(() => 500)
      const bus = yield* EventBus
      const manager = yield* start({ ...fast, url: server.url, events: "content.*", maxAttempts: 3 })
      yield* bus.publish({ type: "content.created", source: "core", data: { id: "c2" } })

      const [letter] = yield* Server.eventually(
        Effect.map(hostDeadLetters, (letters) => (letters.length === 1 ? letters : undefined)),
        "a dead letter in the host's storage"
      )
      assert.strictEqual(server.received.length, 3)
      assert.deepStrictEqual(
        { type: letter.event.type, data: letter.event.data, attempts: letter.attempts, error: letter.error },
        { type: "content.created", data: { id: "c2" }, attempts: 3, error: "HTTP 500 from the target" }
      )
      const client = (yield* ServiceRegistry).client(Principal.operator, Webhook)
      // The host may see the write before the plugin has the store's reply: poll.
      const listed = yield* Server.eventually(
        Effect.map(client.deadLetters({ limit: 10 }), (list) => (list.total === 1 ? list : undefined)),
        "the plugin lists its dead letter"
      )
      assert.deepStrictEqual(
        listed.items.map((item) => item.key),
        [letter.key]
      )

      const bare = (yield* (yield* ServiceRegistry).call(
        Principal.operator,
        "webhook",
        "deadLetters",
        undefined
      )) as {
        total: number
      }
      assert.strictEqual(bare.total, 1)

      server.answer(() => 200)
      const handlers = yield* manager.handlers(pluginId)
      assert.strictEqual(handlers?.integration?.kind, "webhook")
      yield* handlers!.integration!.sync
      assert.deepStrictEqual(yield* hostDeadLetters, [])
      assert.strictEqual(server.received.length, 4)
      assert.strictEqual(Server.bodies(server)[3]?.id, letter.event.id)
    }).pipe(Effect.provide(granted))
  )

  it.scopedLive("the host checks its config against config.schema.json before it runs", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(start({ events: "content.*" }))
      assert.strictEqual(error._tag, "InvalidConfig")
      assert.include(error.message, "url")
      assert.strictEqual((yield* (yield* PluginManager).get(pluginId)).pid, null)
    }).pipe(Effect.provide(granted))
  )

  it.scopedLive(
    "without the operator's network:connect grant it does not start, and names the missing grant",
    () =>
      Effect.gen(function* () {
        const error = yield* Effect.flip(start({ url: "http://127.0.0.1:9/hook" }))
        assert.strictEqual(error._tag, "MissingGrants")
        assert.deepStrictEqual((error as Errors.MissingGrants).missing, ["network:connect"])
        assert.include(error.message, `plugins.grants."${pluginId}"`)
      }).pipe(Effect.provide(NodeTest.layer()))
  )
})
