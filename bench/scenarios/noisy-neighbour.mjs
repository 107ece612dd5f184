// Scenario `noisy-neighbour` (issue 4, item 9): p99 call latency of a healthy plugin while another
// plugin on the same node busy-loops, floods the host with calls, or grows its memory, vs the same
// with the neighbour doing nothing.
//
// Two subprocess plugins (SubprocessLoader defaults, sandbox "permission", no resource limits in
// their manifests): the healthy one is the bench echo plugin (service "healthy"), the neighbour is
// bench/fixtures/plugins/neighbour. In every round the host times `count` sequential mesh calls to
// the healthy plugin (64-character text) once per mode, in this order:
//   quiet   the neighbour process is up and idle (answers heartbeats only): the baseline
//   busy    the neighbour spins a CPU in 20 ms slices
//   flood   the neighbour runs 16 loops of plugin→host Events.publish calls back to back
//   memory  the neighbour allocates and touches 8 MiB every 20 ms up to 256 MiB, then churns
// Each noisy mode is started RAMP_MS before the timed calls and stopped after them.
import { echoContract } from "../fixtures/plugins/echo/contract.mjs"
import { Neighbour } from "../fixtures/plugins/neighbour/index.mjs"
import { alternate, median, percentile, result } from "../lib/harness.mjs"
import { fixturePlugin, meshClient, pluginInfo, startNode, startSubprocessPlugin } from "../lib/node.mjs"
import { reapAll } from "../lib/procs.mjs"
import { meshSamples, TEXT } from "./call-rtt.mjs"

export const id = "noisy-neighbour"

const RAMP_MS = 250
const SETTINGS = {
  quick: { count: 200, warmup: 1, reps: 1 },
  full: { count: 2_000, warmup: 1, reps: 5 }
}
const MODES = [
  { mode: "busy", metric: "p99-busy-loop", what: "busy-loops a CPU (20 ms slices)" },
  { mode: "flood", metric: "p99-flood", what: "floods the host with Events.publish calls (16 loops)" },
  { mode: "memory", metric: "p99-memory", what: "grows to 256 MiB of touched memory and churns it" }
]

const sleep = (millis) => new Promise((resolve) => setTimeout(resolve, millis))

export const run = async ({ quick, log }) => {
  const { count, warmup, reps } = quick ? SETTINGS.quick : SETTINGS.full
  let node
  try {
    node = await startNode()
    await startSubprocessPlugin(node, fixturePlugin("echo"), {
      id: "bench.healthy",
      services: ["healthy"],
      config: { service: "healthy" }
    })
    await startSubprocessPlugin(node, fixturePlugin("neighbour"))
    const healthy = await meshClient(node, echoContract("healthy"))
    const neighbour = await meshClient(node, Neighbour)
    if ((await node.run(healthy.echo({ text: TEXT }))) !== TEXT) throw new Error("healthy echo: bad answer")

    const work = {}
    const noisy = (mode) => async () => {
      await node.run(neighbour.start({ mode }))
      try {
        await sleep(RAMP_MS)
        return percentile(await meshSamples(node, healthy, count), 99)
      } finally {
        const done = await node.run(neighbour.stop())
        work[mode] = done.work
      }
    }
    const rounds = await alternate({
      warmup,
      reps,
      onRound: (round, warm) =>
        log(`noisy-neighbour: round ${round + 1}/${warmup + reps}${warm ? " (warm-up)" : ""}`),
      sides: [
        { name: "quiet", run: async () => percentile(await meshSamples(node, healthy, count), 99) },
        ...MODES.map(({ mode }) => ({ name: mode, run: noisy(mode) }))
      ]
    })
    // The neighbour must have stayed up: a restart would change what the healthy plugin competed with.
    const { restarts, state } = await pluginInfo(node, "bench.neighbour")
    if (restarts !== 0 || state !== "running")
      throw new Error(`the neighbour was ${state}, ${restarts} restarts`)
    const baseline = median(rounds.quiet)
    return MODES.map(({ mode, metric, what }) =>
      result({
        scenario: id,
        metric,
        unit: "µs",
        value: median(rounds[mode]),
        baseline,
        baselineName: "idle neighbour",
        better: "lower",
        target: { on: "ratio", op: "<=", value: 1.2 },
        notes:
          `subject: p99 of ${count} sequential mesh calls (operator) to a healthy SubprocessLoader plugin ` +
          `while the neighbour plugin ${what} (last round: ${work[mode]} units of work), extra stdio ` +
          `pipe (fd 3), Blackhole framing (Call/Reply fast path), ${TEXT.length}-char text, sandbox ` +
          "permission (loader default) for both plugins; baseline: the same calls, same channel, framing, " +
          "payload and sandbox, with the neighbour process up but idle; median of " +
          `${reps} rounds after ${warmup} warm-up, modes alternated in one process`
      })
    )
  } finally {
    await node?.close().catch((error) => log(`noisy-neighbour: node close failed: ${error}`))
    await reapAll()
  }
}
