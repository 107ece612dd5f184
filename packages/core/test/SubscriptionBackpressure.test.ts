/**
 * A subprocess plugin whose event handler awaits a host call must keep up with a burst: the
 * subscription's events and the answers to those calls share one channel, and a full event buffer
 * must never hold up the answers (it did: 16 events queued deadlocked the plugin).
 */

import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { EventBus } from "../src/EventBus.js"
import * as NodeTest from "../src/NodeTest.js"
import { PluginManager } from "../src/PluginManager.js"
import * as Sandbox from "../src/Sandbox.js"
import { Storage } from "../src/Storage.js"
import { captureLogs, type LogLine, registerSubprocess } from "./support.js"

const directory = path.join(import.meta.dirname, "fixtures/plugins/recorder")

describe("subscriptions in a subprocess plugin", () => {
  it.scopedLive("a burst of 200 events, each handled with a host call, is handled in full", () =>
    Effect.gen(function* () {
      const manifest = yield* registerSubprocess(directory)
      const manager = yield* PluginManager
      yield* manager.start(manifest.id)
      const bus = yield* EventBus
      const storage = yield* Storage
      for (let seq = 0; seq < 200; seq++)
        yield* bus.publish({ type: "content.created", source: "core", data: { seq } })
      const namespace = Sandbox.namespaceOf(manifest.id)
      let stored = 0
      for (let i = 0; i < 400 && stored < 200; i++) {
        stored = (yield* storage.list(namespace, "e/")).length
        if (stored < 200) yield* Effect.sleep("50 millis")
      }
      assert.strictEqual(stored, 200)
      assert.strictEqual((yield* manager.get(manifest.id)).state, "running")
    }).pipe(Effect.provide(NodeTest.layer()))
  )

  it.scopedLive(
    "a handler that falls more than 1,024 events behind loses the overflow, counted in the log",
    () => {
      const logs: Array<LogLine> = []
      return Effect.gen(function* () {
        const manifest = yield* registerSubprocess(directory)
        const manager = yield* PluginManager
        yield* manager.start(manifest.id)
        const bus = yield* EventBus
        const storage = yield* Storage
        // Far faster than a handler that awaits a host call per event can take them, in slices the
        // host's side of the subscription forwards as they come (its own buffer is not the one tested).
        const burst = 4000
        for (let seq = 0; seq < burst; seq++) {
          yield* bus.publish({ type: "content.created", source: "core", data: { seq } })
          if (seq % 100 === 99) yield* Effect.sleep("2 millis")
        }
        const warning = (line: string) =>
          line.includes("subscription content.*:") && line.includes("events dropped")
        for (let i = 0; i < 400 && !logs.some((line) => warning(line.message)); i++)
          yield* Effect.sleep("50 millis")
        const reported = logs.find((line) => warning(line.message))?.message
        assert.isDefined(reported, "the plugin reported the drop")
        assert.match(reported!, /subscription content\.\*: \d+ events dropped \(handler too slow\)/)
        // What was not dropped is handled, and the plugin runs on.
        const namespace = Sandbox.namespaceOf(manifest.id)
        let stored = -1
        for (let i = 0; i < 200; i++) {
          const now = (yield* storage.list(namespace, "e/")).length
          if (now === stored) break
          stored = now
          yield* Effect.sleep("100 millis")
        }
        assert.isAbove(stored, 0)
        assert.isBelow(stored, burst)
        assert.strictEqual((yield* manager.get(manifest.id)).state, "running")
      }).pipe(Effect.provide(NodeTest.layer()), Effect.provide(captureLogs(logs)))
    }
  )
})
