// Scenario `call-throughput` (issue 4, item 2): host→plugin calls per second with 1, 16 and 64
// calls in flight.
//
// Sides, alternated in every round (baseline first), per in-flight level:
//   raw   bench/fixtures/raw-echo.mjs over an extra stdio pipe (fd 3) with Blackhole's framing and
//         byte-identical frames, same sandbox: `inFlight` async workers each awaiting one call at a
//         time until the round's calls are done (pipelined on one channel)
//   mesh  the bench echo plugin in a subprocess (SubprocessLoader defaults, sandbox "permission"),
//         called through the mesh as the operator: `inFlight` fibers each awaiting one call at a
//         time until the round's calls are done (the raw side's shape)
// Every call carries the same 64-character text.
import * as Effect from "effect/Effect"
import { echoContract } from "../fixtures/plugins/echo/contract.mjs"
import { alternate, median, now, result } from "../lib/harness.mjs"
import { fixturePlugin, meshClient, startNode, startSubprocessPlugin } from "../lib/node.mjs"
import { reapAll, startRawEcho } from "../lib/procs.mjs"
import { TEXT } from "./call-rtt.mjs"

export const id = "call-throughput"

const LEVELS = [1, 16, 64]
const SETTINGS = {
  quick: { count: { 1: 200, 16: 1_000, 64: 1_500 }, warmup: 1, reps: 2 },
  full: { count: { 1: 2_000, 16: 8_000, 64: 16_000 }, warmup: 2, reps: 7 }
}

const perSecond = (count, start) => count / (Number(now() - start) / 1e9)

/** `inFlight` workers share `count` calls of a Promise-returning `call`; calls per second. */
export const rawThroughput = async (count, inFlight, call) => {
  let issued = 0
  const worker = async () => {
    while (issued < count) {
      issued++
      await call(TEXT)
    }
  }
  const start = now()
  await Promise.all(Array.from({ length: inFlight }, worker))
  return perSecond(count, start)
}

/**
 * `count` mesh calls with `inFlight` at a time, in one Effect (one runPromise), shaped like the raw
 * and Moleculer sides: `inFlight` fibers, each making one call at a time until `count` are made.
 * Calls per second.
 */
export const meshThroughput = async (node, echo, count, inFlight) => {
  const payload = { text: TEXT }
  let issued = 0
  const worker = Effect.whileLoop({
    while: () => issued < count,
    body: () => {
      issued++
      return echo.echo(payload)
    },
    step: () => {}
  })
  const start = now()
  await node.run(
    Effect.all(
      Array.from({ length: inFlight }, () => worker),
      { concurrency: "unbounded", discard: true }
    )
  )
  return perSecond(count, start)
}

/**
 * The same calls as `Effect.forEach(calls, call, { concurrency: inFlight })`: a fiber forked per
 * call (the idiomatic shape for a batch of independent calls), which costs the caller more.
 */
export const meshForkingThroughput = async (node, echo, count, inFlight) => {
  const calls = Array.from({ length: count }, () => ({ text: TEXT }))
  const start = now()
  await node.run(
    Effect.forEach(calls, (payload) => echo.echo(payload), { concurrency: inFlight, discard: true })
  )
  return perSecond(count, start)
}

export const run = async ({ quick, log }) => {
  const settings = quick ? SETTINGS.quick : SETTINGS.full
  const { warmup, reps } = settings
  let node
  let raw
  try {
    node = await startNode()
    await startSubprocessPlugin(node, fixturePlugin("echo"))
    const echo = await meshClient(node, echoContract())
    if ((await node.run(echo.echo({ text: TEXT }))) !== TEXT) throw new Error("mesh echo: bad answer")
    raw = await startRawEcho()

    const rows = []
    for (const inFlight of LEVELS) {
      const count = settings.count[inFlight]
      const rounds = await alternate({
        warmup,
        reps,
        onRound: (round, warm) =>
          log(
            `call-throughput ${inFlight} in flight: round ${round + 1}/${warmup + reps}${warm ? " (warm-up)" : ""}`
          ),
        sides: [
          { name: "raw", run: () => rawThroughput(count, inFlight, raw.call) },
          { name: "mesh", run: () => meshThroughput(node, echo, count, inFlight) }
        ]
      })
      const common = `${TEXT.length}-char text, sandbox permission`
      rows.push(
        result({
          scenario: id,
          metric: `calls-per-second-${inFlight}`,
          unit: "calls/s",
          value: median(rounds.mesh),
          baseline: median(rounds.raw),
          baselineName: `raw-pipelined-echo-fd3-${inFlight}`,
          better: "higher",
          target: null,
          notes:
            `subject: mesh client (operator) → SubprocessLoader plugin, ${inFlight} fibers each making one call at a time, ` +
            `extra stdio pipe (fd 3), Blackhole framing (Call/Reply fast path), ${common} (loader default); ` +
            `baseline: raw echo child, ${inFlight} pipelined async workers on one channel, extra stdio pipe ` +
            `(fd 3), same framing and frames, ${common} (same flags); median of ${reps} rounds of ${count} ` +
            `calls after ${warmup} warm-up, sides alternated in one process`
        })
      )
    }
    return rows
  } finally {
    await raw?.close().catch((error) => log(`call-throughput: close failed: ${error}`))
    await node?.close().catch((error) => log(`call-throughput: node close failed: ${error}`))
    await reapAll()
  }
}
