// Scenario `peer-moleculer` (issue 4, item 8): the same echo service on Moleculer 0.15, the
// framework users would otherwise pick, against Blackhole in the same run: sequential latency
// (p50, p99) and calls/s with 64 in flight. Rows: value = Blackhole, baseline = Moleculer.
//
// Sides, alternated in every round (Moleculer first):
//   moleculer  two processes: a caller broker in this process and bench/fixtures/moleculer-echo.mjs
//              in a child, TCP transporter over 127.0.0.1 only (udpDiscovery off, static URLs, a
//              loopback-only listener: bench/lib/moleculer.mjs), JSON serializer, params validated;
//              `broker.call("echo.echo", { text })`
//   blackhole  this process as the host and the bench echo plugin as a subprocess (SubprocessLoader
//              defaults, sandbox "permission"), the mesh client as the operator
// The same 64-character text; 64 in flight = 64 async workers each awaiting one call at a time
// (Moleculer) / 64 fibers each awaiting one call at a time (Blackhole), as in call-throughput. A
// second Blackhole figure forks a fiber per call (Effect.forEach with concurrency 64), which costs
// the caller ~4 µs more per call; it is reported, without a target.
import * as readline from "node:readline"
import { echoContract } from "../fixtures/plugins/echo/contract.mjs"
import { alternate, median, percentile, result } from "../lib/harness.mjs"
import { freePort, makeBroker, moleculerVersion } from "../lib/moleculer.mjs"
import { fixture, fixturePlugin, meshClient, startNode, startSubprocessPlugin } from "../lib/node.mjs"
import { reap, reapAll, spawnTracked } from "../lib/procs.mjs"
import { meshSamples, promiseSamples, TEXT } from "./call-rtt.mjs"
import { meshForkingThroughput, meshThroughput, rawThroughput } from "./call-throughput.mjs"

export const id = "peer-moleculer"

const IN_FLIGHT = 64
const SETTINGS = {
  quick: { sequential: 300, pipelined: 2_000, warmup: 1, reps: 2 },
  full: { sequential: 2_000, pipelined: 10_000, warmup: 2, reps: 7 }
}

/** Starts the Moleculer echo service in a child and a caller broker here; resolves when echo is reachable. */
const startMoleculer = async () => {
  const [callerPort, serverPort] = [await freePort(), await freePort()]
  const server = spawnTracked(
    process.execPath,
    [
      fixture("moleculer-echo.mjs"),
      "bench-echo-server",
      String(serverPort),
      "bench-caller",
      String(callerPort)
    ],
    { stdio: ["pipe", "pipe", "inherit"] }
  )
  const broker = makeBroker({
    nodeID: "bench-caller",
    port: callerPort,
    peers: [{ nodeID: "bench-echo-server", port: serverPort }]
  })
  const close = async () => {
    await broker.stop().catch(() => {})
    server.child.stdin.end()
    const stopped = await Promise.race([
      server.exited,
      new Promise((resolve) => setTimeout(resolve, 2_000, null))
    ])
    if (stopped === null) await reap(server)
  }
  try {
    // Both brokers start at once; the caller's gossip reaches the server once it listens.
    await Promise.all([
      new Promise((resolve, reject) => {
        const lines = readline.createInterface({ input: server.child.stdout })
        lines.on("line", (line) => line === "ready" && resolve())
        server.exited.then(({ code }) => reject(new Error(`moleculer echo server exited (${code})`)))
      }),
      broker.start()
    ])
    await broker.waitForServices(["echo"], 20_000, 50)
    const call = (text) => broker.call("echo.echo", { text })
    if ((await call(TEXT)) !== TEXT) throw new Error("moleculer echo: bad answer")
    return { call, close }
  } catch (error) {
    await close()
    throw error
  }
}

export const run = async ({ quick, log }) => {
  const { sequential, pipelined, warmup, reps } = quick ? SETTINGS.quick : SETTINGS.full
  let node
  let peer
  try {
    node = await startNode()
    await startSubprocessPlugin(node, fixturePlugin("echo"))
    const echo = await meshClient(node, echoContract())
    if ((await node.run(echo.echo({ text: TEXT }))) !== TEXT) throw new Error("mesh echo: bad answer")
    peer = await startMoleculer()

    const summary = (samples) => ({ p50: percentile(samples, 50), p99: percentile(samples, 99) })
    const rounds = await alternate({
      warmup,
      reps,
      onRound: (round, warm) =>
        log(`peer-moleculer: round ${round + 1}/${warmup + reps}${warm ? " (warm-up)" : ""}`),
      sides: [
        {
          name: "moleculer",
          run: async () => ({
            ...summary(await promiseSamples(sequential, peer.call)),
            perSecond: await rawThroughput(pipelined, IN_FLIGHT, peer.call)
          })
        },
        {
          name: "blackhole",
          run: async () => ({
            ...summary(await meshSamples(node, echo, sequential)),
            perSecond: await meshThroughput(node, echo, pipelined, IN_FLIGHT),
            forkingPerSecond: await meshForkingThroughput(node, echo, pipelined, IN_FLIGHT)
          })
        }
      ]
    })
    const m = (side, key) => median(rounds[side].map((round) => round[key] ?? round.perSecond))
    const notes =
      "subject: Blackhole mesh client (operator) → SubprocessLoader plugin in a second process, extra " +
      "stdio pipe (fd 3), Blackhole framing (5-byte header + JSON, Call/Reply fast path), " +
      `${TEXT.length}-char text, payload validated by the plugin's Schema, sandbox permission (loader ` +
      `default); baseline: Moleculer ${moleculerVersion} caller broker → echo service broker in a second ` +
      "process, TCP transporter on 127.0.0.1 (udpDiscovery off, static URLs, loopback-only listener), " +
      `Moleculer's packet framing with the JSON serializer, the same text, params validated ` +
      `(fastest-validator), no sandbox; sequential: ${sequential} calls per round; pipelined: ${pipelined} ` +
      `calls with ${IN_FLIGHT} in flight per round (${IN_FLIGHT} workers each awaiting one call at a time on ` +
      `both sides; the fiber-per-call row: Blackhole with Effect.forEach concurrency ${IN_FLIGHT}); median of ${reps} rounds after ${warmup} warm-up, ` +
      "sides alternated in one process"
    const row = (metric, unit, key, better, target) =>
      result({
        scenario: id,
        metric,
        unit,
        value: m("blackhole", key),
        baseline: m("moleculer", key),
        baselineName: "moleculer-0.15-tcp",
        better,
        target,
        notes
      })
    return [
      row("p50", "µs", "p50", "lower", null),
      row("p99", "µs", "p99", "lower", null),
      row(`calls-per-second-${IN_FLIGHT}`, "calls/s", "perSecond", "higher", {
        on: "ratio",
        op: ">=",
        value: 1.5
      }),
      // Moleculer's side has one shape; `?? perSecond` compares it with the forking one.
      row(`calls-per-second-${IN_FLIGHT}-fiber-per-call`, "calls/s", "forkingPerSecond", "higher", null)
    ]
  } finally {
    await peer?.close().catch((error) => log(`peer-moleculer: moleculer close failed: ${error}`))
    await node?.close().catch((error) => log(`peer-moleculer: node close failed: ${error}`))
    await reapAll()
  }
}
