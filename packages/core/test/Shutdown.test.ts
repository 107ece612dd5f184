/**
 * Interrupting a node (what Ctrl-C does) still runs each subprocess plugin's stop sequence: its
 * finalizers are uninterruptible, and their bounded waits must not be cut short by the interrupt.
 */

import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as NodeTest from "../src/NodeTest.js"
import { type PluginInfo, PluginManager } from "../src/PluginManager.js"
import { isGone, registerSubprocess } from "./support.js"

const directory = path.join(import.meta.dirname, "fixtures/plugins/echo")

describe("shutdown", () => {
  it.live("interrupting the node runs its subprocess plugins' stop sequence: no process is left", () =>
    Effect.gen(function* () {
      const started = yield* Deferred.make<PluginInfo>()
      const node = yield* Effect.gen(function* () {
        const manifest = yield* registerSubprocess(directory)
        const manager = yield* PluginManager
        yield* manager.start(manifest.id)
        yield* Deferred.succeed(started, yield* manager.get(manifest.id))
        return yield* Effect.never
      }).pipe(Effect.provide(NodeTest.layer()), Effect.fork)

      const info = yield* Deferred.await(started)
      assert.isNotNull(info.pid)
      yield* Fiber.interrupt(node)
      assert.isTrue(isGone(info.pid!), "the plugin process is gone once the node has stopped")
    })
  )
})
