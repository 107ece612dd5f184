// Scenario `idle-rss` (issue 4, item 4): resident memory of an idle plugin process vs an idle
// bare node, both read from /proc/<pid>/status (VmRSS) after the same idle time.
//
// Sides, alternated in every round (baseline first):
//   bare    `node -e "setInterval(() => {}, 1000)"`: a node that stays up doing nothing
//   plugin  the bench echo plugin started by the SubprocessLoader (defaults: sandbox "permission",
//           heartbeat every 1 s), after one mesh call; its node process (setpriv execs in place)
// Each round starts a fresh process, waits `idle` ms, reads VmRSS, then stops it.
import * as Effect from "effect/Effect"
import { echoContract } from "../fixtures/plugins/echo/contract.mjs"
import { alternate, median, result } from "../lib/harness.mjs"
import {
  fixturePlugin,
  meshClient,
  pluginInfo,
  readRss,
  removePlugin,
  startNode,
  startSubprocessPlugin
} from "../lib/node.mjs"
import { reap, reapAll, spawnTracked } from "../lib/procs.mjs"

export const id = "idle-rss"

const SETTINGS = {
  quick: { warmup: 0, reps: 1, idle: 300 },
  full: { warmup: 1, reps: 5, idle: 1_000 }
}

const MiB = 1024 * 1024
const sleep = (millis) => new Promise((resolve) => setTimeout(resolve, millis))

/** Starts an idle bare node, waits until it runs, then `idle` ms; returns its VmRSS in MiB. */
export const bareIdleRss = async (idle) => {
  const proc = spawnTracked(
    process.execPath,
    ["-e", "process.stdout.write('up'); setInterval(() => {}, 1000)"],
    {
      stdio: ["ignore", "pipe", "ignore"]
    }
  )
  try {
    await new Promise((resolve, reject) => {
      proc.child.stdout.once("data", resolve)
      proc.exited.then(() => reject(new Error("the idle bare node exited")))
    })
    await sleep(idle)
    const rss = readRss(proc.child.pid)
    if (rss === null) throw new Error("cannot read the bare node's VmRSS")
    return rss / MiB
  } finally {
    await reap(proc)
  }
}

export const run = async ({ quick, log }) => {
  const { warmup, reps, idle } = quick ? SETTINGS.quick : SETTINGS.full
  let node
  try {
    node = await startNode()
    const directory = fixturePlugin("echo")
    let serial = 0
    const pluginIdleRss = async () => {
      const pluginId = `bench.idle.p${++serial}`
      const service = `idle${serial}`
      await startSubprocessPlugin(node, directory, { id: pluginId, services: [service], config: { service } })
      try {
        const echo = await meshClient(node, echoContract(service))
        await node.run(Effect.asVoid(echo.echo({ text: "ready?" })))
        await sleep(idle)
        const { pid } = await pluginInfo(node, pluginId)
        const rss = pid === null ? null : readRss(pid)
        if (rss === null) throw new Error("cannot read the plugin's VmRSS")
        return rss / MiB
      } finally {
        await removePlugin(node, pluginId)
      }
    }
    const rounds = await alternate({
      warmup,
      reps,
      onRound: (round, warm) =>
        log(`idle-rss: round ${round + 1}/${warmup + reps}${warm ? " (warm-up)" : ""}`),
      sides: [
        { name: "bare", run: () => bareIdleRss(idle) },
        { name: "plugin", run: pluginIdleRss }
      ]
    })
    return [
      result({
        scenario: id,
        metric: "idle-rss",
        unit: "MiB",
        value: median(rounds.plugin),
        baseline: median(rounds.bare),
        baselineName: "idle bare node",
        better: "lower",
        target: { on: "ratio", op: "<=", value: 1.3 },
        notes:
          "subject: SubprocessLoader plugin process (bench echo: SDK runtime, Effect, @effect/rpc, channel " +
          "on the extra stdio pipe fd 3 with Blackhole framing, heartbeat every 1 s), after one 6-char " +
          `echo call and ${idle} ms idle, sandbox permission (loader default); baseline: ` +
          '`node -e "setInterval(() => {}, 1000)"`, no channel, no framing, no payload, no sandbox, after ' +
          `${idle} ms idle; VmRSS from /proc/<pid>/status, median of ${reps} rounds after ${warmup} ` +
          "warm-up, a fresh process per round, sides alternated in one process"
      })
    ]
  } finally {
    await node?.close().catch((error) => log(`idle-rss: node close failed: ${error}`))
    await reapAll()
  }
}
