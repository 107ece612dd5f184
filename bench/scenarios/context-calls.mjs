// Scenario `context-calls` (issue 4, item 3): plugin→host context calls (storage put, storage get,
// event publish) from inside a subprocess plugin, ops/s and per-call p50, vs the same operation
// from the same plugin code compiled in.
//
// Sides, alternated in every round (baseline first), per operation:
//   inprocess   bench/fixtures/plugins/ctx registered with `manager.register(definition)`: its
//               context services are the sandbox's views, called directly in the host process
//   subprocess  the same definition in a subprocess (SubprocessLoader defaults, sandbox
//               "permission"): every context call is an @effect/rpc request over the channel
//               (extra stdio pipe, fd 3, Blackhole framing), served by the host from the sandbox
// The host asks each side to run `n` calls in a row (`bench({ op, n })` over the mesh); the loop is
// timed inside the plugin, so the host→plugin call that starts it is not counted. Both sides use
// the node's production storage (SQLite, WAL) and bus (no subscribers on the published type).
import * as Effect from "effect/Effect"
import { ctxContract } from "../fixtures/plugins/ctx/contract.mjs"
import { makeCtxPlugin, PAYLOAD_BYTES } from "../fixtures/plugins/ctx/index.mjs"
import { alternate, median, result } from "../lib/harness.mjs"
import {
  fixturePlugin,
  meshClient,
  startInProcessPlugin,
  startNode,
  startSubprocessPlugin
} from "../lib/node.mjs"
import { reapAll } from "../lib/procs.mjs"

export const id = "context-calls"

const SETTINGS = {
  quick: { n: 100, warmup: 1, reps: 2 },
  full: { n: 1_000, warmup: 2, reps: 7 }
}

const OPS = [
  { op: "put", name: "storage-put", what: `PluginStorage.store of ${PAYLOAD_BYTES} B (one key, upsert)` },
  { op: "get", name: "storage-get", what: `PluginStorage.retrieve of that ${PAYLOAD_BYTES}-byte value` },
  { op: "publish", name: "event-publish", what: "Events.publish of { i } (no subscribers)" }
]

export const run = async ({ quick, log }) => {
  const { n, warmup, reps } = quick ? SETTINGS.quick : SETTINGS.full
  let node
  try {
    node = await startNode()
    await startSubprocessPlugin(node, fixturePlugin("ctx"))
    await startInProcessPlugin(node, makeCtxPlugin({ id: "bench.ctx.inprocess", service: "benchctxlocal" }))
    const subprocess = await meshClient(node, ctxContract("benchctx"))
    const inprocess = await meshClient(node, ctxContract("benchctxlocal"))
    const bench = (client, op) => node.run(Effect.map(client.bench({ op, n }), (timing) => timing))

    const rows = []
    for (const { op, name, what } of OPS) {
      const rounds = await alternate({
        warmup,
        reps,
        onRound: (round, warm) =>
          log(`context-calls ${op}: round ${round + 1}/${warmup + reps}${warm ? " (warm-up)" : ""}`),
        sides: [
          { name: "inprocess", run: () => bench(inprocess, op) },
          { name: "subprocess", run: () => bench(subprocess, op) }
        ]
      })
      const opsPerSecond = (side) => median(rounds[side].map((t) => n / (t.elapsedNs / 1e9)))
      const p50 = (side) => median(rounds[side].map((t) => t.p50Ns / 1e3))
      const notes =
        `subject: ${what} from a SubprocessLoader plugin, @effect/rpc PluginToHost request over an extra ` +
        `stdio pipe (fd 3), Blackhole framing (5-byte header + JSON), sandbox permission (loader default); ` +
        `baseline: the same plugin code compiled in (manager.register), the same sandbox views called ` +
        `in-process, no channel, no framing, sandbox n/a (host process); both on the node's SQLite storage ` +
        `and bus; ${n} sequential calls timed inside the plugin, median of ${reps} rounds after ${warmup} ` +
        `warm-up, sides alternated in one process`
      rows.push(
        result({
          scenario: id,
          metric: `${name}-ops-per-second`,
          unit: "ops/s",
          value: opsPerSecond("subprocess"),
          baseline: opsPerSecond("inprocess"),
          baselineName: "in-process plugin",
          better: "higher",
          target: null,
          notes
        }),
        result({
          scenario: id,
          metric: `${name}-p50`,
          unit: "µs",
          value: p50("subprocess"),
          baseline: p50("inprocess"),
          baselineName: "in-process plugin",
          better: "lower",
          target: null,
          notes
        })
      )
    }
    return rows
  } finally {
    await node?.close().catch((error) => log(`context-calls: node close failed: ${error}`))
    await reapAll()
  }
}
