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
import { registerSubprocess } from "./support.js"

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
})
