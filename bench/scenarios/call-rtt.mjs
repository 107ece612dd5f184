// Scenario `call-rtt` (issue 4, item 1): host→plugin call round trip, sequential, p50/p99.
//
// Sides, taking turns in blocks of 100 calls within every round (baseline first):
//   raw       bench/fixtures/raw-echo.mjs in a child: the same channel kind (an extra stdio pipe,
//             fd 3), the same framing (u32 BE length | u8 kind | JSON), byte-identical Call and
//             Reply frames, the same permission sandbox; a Promise per call in the host
//   fork-ipc  bench/fixtures/fork-echo.mjs via child_process.fork: Node's IPC channel (JSON), the
//             same messages and sandbox
//   mesh      the bench echo plugin (bench/fixtures/plugins/echo) in a subprocess started by the
//             SubprocessLoader with its defaults (sandbox "permission"), called through the mesh
//             (ServiceRegistry client as the operator): contract lookup, permission check,
//             service.before.call hooks, the fast-path Call/Reply frames, payload decoding and
//             validation in the plugin, a fiber per call there
// Each call sends the same 64-character text and gets it back.

import * as Effect from "effect/Effect"
import { echoContract } from "../fixtures/plugins/echo/contract.mjs"
import { alternate, median, now, percentile, result } from "../lib/harness.mjs"
import { fixturePlugin, meshClient, startNode, startSubprocessPlugin } from "../lib/node.mjs"
import { reapAll, startForkEcho, startRawEcho } from "../lib/procs.mjs"

export const id = "call-rtt"

const SETTINGS = {
  quick: { count: 300, warmup: 1, reps: 2 },
  full: { count: 2_000, warmup: 3, reps: 9 }
}

/** Calls per side before the next side takes its turn, within a round. */
const BLOCK = 100

/** The payload of every call: 64 ASCII characters. */
export const TEXT = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_"

/** µs between two `now()` readings. */
const micros = (start, end) => Number(end - start) / 1e3

/** Sequential calls of a Promise-returning `call`, each timed; samples in µs. */
export const promiseSamples = async (count, call) => {
  const samples = new Array(count)
  for (let i = 0; i < count; i++) {
    const start = now()
    await call(TEXT)
    samples[i] = micros(start, now())
  }
  return samples
}

/** Sequential mesh calls in one Effect loop (one runPromise per round), each timed; samples in µs. */
export const meshSamples = (node, echo, count) =>
  node.run(
    Effect.gen(function* () {
      const samples = new Array(count)
      for (let i = 0; i < count; i++) {
        const start = now()
        yield* echo.echo({ text: TEXT })
        samples[i] = micros(start, now())
      }
      return samples
    })
  )

export const run = async ({ quick, log }) => {
  const { count, warmup, reps } = quick ? SETTINGS.quick : SETTINGS.full
  let node
  const opened = []
  try {
    node = await startNode()
    await startSubprocessPlugin(node, fixturePlugin("echo"))
    const echo = await meshClient(node, echoContract())
    if ((await node.run(echo.echo({ text: TEXT }))) !== TEXT) throw new Error("mesh echo: bad answer")
    const raw = await startRawEcho()
    opened.push(raw)
    const fork = await startForkEcho()
    opened.push(fork)

    const summary = (samples) => ({ p50: percentile(samples, 50), p99: percentile(samples, 99) })
    // The sides take turns in blocks of BLOCK calls within a round, not a whole round each: on
    // these VMs a process's wake-up latency switches between ~30 µs and ~150 µs for seconds at a
    // time, and a side that ran whole in one state or the other would be measured on luck.
    const interleaved = async () => {
      const samples = { raw: [], fork: [], mesh: [] }
      for (let done = 0; done < count; done += BLOCK) {
        const n = Math.min(BLOCK, count - done)
        samples.raw.push(...(await promiseSamples(n, raw.call)))
        samples.fork.push(...(await promiseSamples(n, fork.call)))
        samples.mesh.push(...(await meshSamples(node, echo, n)))
      }
      return { raw: summary(samples.raw), fork: summary(samples.fork), mesh: summary(samples.mesh) }
    }
    const rounds = await alternate({
      warmup,
      reps,
      onRound: (round, warm) =>
        log(`call-rtt: round ${round + 1}/${warmup + reps}${warm ? " (warm-up)" : ""}`),
      sides: [{ name: "all", run: interleaved }]
    })
    const p = (side, key) => median(rounds.all.map((round) => round[side][key]))

    const payload = `${TEXT.length}-char text (Call frame ~${JSON.stringify([1, "benchecho", "echo", { text: TEXT }]).length + 5} B)`
    const subjectNotes =
      "subject: mesh client (operator) → SubprocessLoader plugin, extra stdio pipe (fd 3), Blackhole " +
      `framing (5-byte header + JSON, Call/Reply fast path), ${payload}, sandbox permission (loader default)`
    const rawNotes =
      "baseline: raw echo child, extra stdio pipe (fd 3), the same framing and frames, " +
      `${payload}, sandbox permission (same flags)`
    const forkNotes =
      "baseline: child_process.fork + process.send (Node IPC channel, JSON serialisation), " +
      `same message array, ${TEXT.length}-char text, sandbox permission (same flags)`
    const shape = `sequential calls; per-round p50/p99 of ${count} calls per side, the sides taking turns in blocks of ${BLOCK} calls, median of ${reps} rounds after ${warmup} warm-up, in one process`
    const row = (metric, value, baseline, baselineName, target, notes) =>
      result({
        scenario: id,
        metric,
        unit: "µs",
        value,
        baseline,
        baselineName,
        better: "lower",
        target,
        notes
      })
    return [
      row(
        "p50",
        p("mesh", "p50"),
        p("raw", "p50"),
        "raw-echo-fd3",
        { on: "ratio", op: "<=", value: 1.5 },
        `${subjectNotes}; ${rawNotes}; ${shape}`
      ),
      row(
        "p99",
        p("mesh", "p99"),
        p("raw", "p99"),
        "raw-echo-fd3",
        null,
        `${subjectNotes}; ${rawNotes}; ${shape}`
      ),
      row(
        "p50-vs-fork-ipc",
        p("mesh", "p50"),
        p("fork", "p50"),
        "fork-ipc",
        null,
        `${subjectNotes}; ${forkNotes}; ${shape}`
      )
    ]
  } finally {
    for (const side of opened.reverse())
      await side.close().catch((error) => log(`call-rtt: close failed: ${error}`))
    await node?.close().catch((error) => log(`call-rtt: node close failed: ${error}`))
    await reapAll()
  }
}
