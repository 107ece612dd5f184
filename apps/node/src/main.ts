#!/usr/bin/env node
import { fileURLToPath } from "node:url"
import * as BlackholeNode from "@blackhole/core/BlackholeNode"
import { Identity } from "@blackhole/core/Identity"
import { PluginManager } from "@blackhole/core/PluginManager"
/**
 * The `blackhole` node. Until the CLI lands this starts a node in `.blackhole/`
 * with the example plugins compiled in, logs what happens, and stops cleanly
 * on Ctrl-C (plugins in reverse dependency order).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import clock from "./examples/clock.js"
import journal from "./examples/journal.js"

const config: BlackholeNode.NodeConfig = {
  dataDir: process.env.BLACKHOLE_DATA_DIR ?? ".blackhole",
  // Compiled in: these run in this process.
  plugins: [clock, journal],
  // Discovered: each plugin found here runs in its own supervised process.
  discovery: { directories: [fileURLToPath(new URL("../plugins", import.meta.url))] }
}

const summary = Layer.effectDiscard(
  Effect.gen(function* () {
    const identity = yield* Identity
    const plugins = yield* (yield* PluginManager).list
    const rows = plugins.map(
      (p) => `  ${p.id.padEnd(32)} ${p.version.padEnd(8)} ${p.loader.padEnd(10)} ${p.state}`
    )
    yield* Effect.logInfo(
      [
        `Blackhole node ${BlackholeNode.version} started`,
        `  node id:  ${identity.nodeId}`,
        `  data dir: ${BlackholeNode.dataDirOf(config)}`,
        "  plugins:",
        ...rows
      ].join("\n")
    )
  })
)

summary.pipe(Layer.provide(BlackholeNode.layer(config)), Layer.launch, NodeRuntime.runMain)
