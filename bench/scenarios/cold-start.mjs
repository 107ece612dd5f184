// Scenario `cold-start` (issue 4, item 4): plugin fork → ready (handshake done, program started,
// first call answered), p50, vs `node -e 0` spawned from the same parent (spawn → exit).
//
// Sides, alternated in every round (baseline first):
//   bare    `node -e 0` via child_process.spawn, timed from spawn to its exit event
//   plugin  the bench echo plugin registered with the SubprocessLoader (defaults: sandbox
//           "permission") and started by the manager, timed from `registerWith` to the answer of
//           its first mesh call; then stopped and unregistered (not timed)
// Each round uses a fresh plugin id, so nothing is reused between rounds except the OS page cache.
import * as Effect from "effect/Effect"
import { echoContract } from "../fixtures/plugins/echo/contract.mjs"
import { alternate, median, now, result } from "../lib/harness.mjs"
import { fixturePlugin, meshClient, removePlugin, startNode, startSubprocessPlugin } from "../lib/node.mjs"
import { reapAll, spawnTracked } from "../lib/procs.mjs"

export const id = "cold-start"

const SETTINGS = {
  quick: { warmup: 0, reps: 2 },
  full: { warmup: 1, reps: 9 }
}

const ms = (start) => Number(now() - start) / 1e6

/** Spawn → exit of `node -e 0`, in ms. */
export const bareNode = async () => {
  const start = now()
  const { exited } = spawnTracked(process.execPath, ["-e", "0"], { stdio: "ignore" })
  const { code } = await exited
  if (code !== 0) throw new Error(`node -e 0 exited with ${code}`)
  return ms(start)
}

export const run = async ({ quick, log }) => {
  const { warmup, reps } = quick ? SETTINGS.quick : SETTINGS.full
  let node
  try {
    node = await startNode()
    const directory = fixturePlugin("echo")
    let serial = 0
    const coldPlugin = async () => {
      const pluginId = `bench.cold.p${++serial}`
      const service = `cold${serial}`
      const echo = await meshClient(node, echoContract(service))
      const start = now()
      await startSubprocessPlugin(node, directory, { id: pluginId, services: [service], config: { service } })
      await node.run(Effect.asVoid(echo.echo({ text: "ready?" })))
      const elapsed = ms(start)
      await removePlugin(node, pluginId)
      return elapsed
    }
    const rounds = await alternate({
      warmup,
      reps,
      onRound: (round, warm) =>
        log(`cold-start: round ${round + 1}/${warmup + reps}${warm ? " (warm-up)" : ""}`),
      sides: [
        { name: "bare", run: bareNode },
        { name: "plugin", run: coldPlugin }
      ]
    })
    return [
      result({
        scenario: id,
        metric: "fork-to-ready-p50",
        unit: "ms",
        value: median(rounds.plugin),
        baseline: median(rounds.bare),
        baselineName: "node -e 0",
        better: "lower",
        target: { on: "ratio", op: "<=", value: 1.5 },
        notes:
          "subject: SubprocessLoader plugin (bench echo), registerWith → spawn (setpriv --pdeathsig, node " +
          "--experimental-permission with per-directory reads) → runtime loads the SDK and plugin module → " +
          "Hello/Welcome handshake over the extra stdio pipe (fd 3, Blackhole framing) → Start RPC → " +
          "running → first mesh call answered (6-char text), sandbox permission (loader default); baseline: " +
          "`node -e 0` spawned from the same parent, spawn → exit, no channel, no framing, no payload, no " +
          `sandbox; p50 (median) of ${reps} rounds after ${warmup} warm-up, sides alternated in one process`
      })
    ]
  } finally {
    await node?.close().catch((error) => log(`cold-start: node close failed: ${error}`))
    await reapAll()
  }
}
