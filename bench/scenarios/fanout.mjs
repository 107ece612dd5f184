// Scenario `fanout` (issue 4, item 5): one publisher (the host's EventBus.publish), 1 / 10 / 50
// subscribers across subprocess plugins: total deliveries per second, and p99 publish→deliver.
//
// Subscribers are bench/fixtures/plugins/subscriber, one plugin per subscriber: 50 (10 with
// --quick) subprocess plugins (SubprocessLoader defaults, sandbox "permission"), and as many
// compiled-in copies of the same definition for the baseline (the in-process bus: the sandbox's
// Events view over the node's EventBus, no channel). Subscriber i listens on the tiers it belongs
// to (i < 1, i < 10, i < 50), so one set of processes serves every subscriber count.
//
// Per side and round:
//   throughput  `events` events published in batches of BATCH, at most windowFor(N) batches
//               unacknowledged (at most 768 events, under the default 1024-event subscriber buffer:
//               nothing is dropped, which the scenario checks); the last event of a batch asks every subscriber
//               for an ack (an event back to the host). Deliveries/s = events × subscribers ÷ (first
//               publish → last ack).
//   latency     `probes` events one at a time, each acked by every subscriber, then PROBE_GAP_MS
//               before the next (so that the acks' own plugin→host calls have settled); every
//               subscriber reports publish→deliver as it saw it (process.hrtime on both ends: the
//               same system-wide monotonic clock). p99 over all deliveries of the round.
import { monitorEventLoopDelay } from "node:perf_hooks"
import * as EventBusModule from "@blackhole/core/EventBus"
import { PluginManager } from "@blackhole/core/PluginManager"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { makeSubscriber } from "../fixtures/plugins/subscriber/index.mjs"
import { alternate, median, now, percentile, result } from "../lib/harness.mjs"
import { fixturePlugin, pool, startInProcessPlugin, startNode, startSubprocessPlugin } from "../lib/node.mjs"
import { reapAll } from "../lib/procs.mjs"

export const id = "fanout"

const { EventBus } = EventBusModule
const BATCH = 64
// Unacknowledged batches per subscriber: 12 (768 events, under the default 1024-event subscriber
// buffer), and at most ~7,700 unacknowledged deliveries in all (12 batches to 10 subscribers):
// 2 batches with 50 subscribers. With 12 batches to 50 cold subscriber processes on 2 cores, some
// of them missed the 3 s heartbeat deadline and the host killed them as hung (bench/README.md).
const windowFor = (tier) => Math.min(12, Math.max(1, Math.floor(120 / tier)))
const ACK_TIMEOUT_MS = 30_000
const PROBE_GAP_MS = 5

const SETTINGS = {
  quick: {
    tiers: [1, 10],
    events: { 1: 256, 10: 256 },
    probes: 10,
    warmup: { 1: 1, 10: 1 },
    reps: { 1: 2, 10: 2 }
  },
  full: {
    tiers: [1, 10, 50],
    events: { 1: 8_192, 10: 4_096, 50: 1_536 },
    probes: 100,
    warmup: { 1: 2, 10: 2, 50: 1 },
    reps: { 1: 5, 10: 5, 50: 3 }
  }
}

/** Collects the subscribers' acks (events on `pattern`) in the host; `waitFor(seq, count)` resolves with their latencies. */
const collectAcks = async (node, pattern) => {
  const entries = new Map()
  const entry = (seq) => {
    let found = entries.get(seq)
    if (found === undefined) {
      found = { latencies: [], expected: undefined, resolve: undefined }
      entries.set(seq, found)
    }
    return found
  }
  const settle = (seq, found) => {
    if (found.expected !== undefined && found.latencies.length >= found.expected) {
      entries.delete(seq)
      found.resolve(found.latencies)
    }
  }
  const onAck = ({ seq, latencyNs }) => {
    const found = entry(seq)
    found.latencies.push(latencyNs)
    settle(seq, found)
  }
  const scope = await node.run(Scope.make())
  const subscription = await node.run(
    Effect.flatMap(EventBus, (bus) =>
      bus.subscribe(pattern, { capacity: 1 << 16, subscriber: "bench" })
    ).pipe(Scope.extend(scope))
  )
  const fiber = node.runtime.runFork(
    Stream.runForEach(subscription.stream, (event) => Effect.sync(() => onAck(event.data)))
  )
  return {
    waitFor: (seq, count) =>
      new Promise((resolve, reject) => {
        const found = entry(seq)
        const timer = setTimeout(
          () =>
            reject(
              new Error(
                `fanout: ${found.latencies.length}/${count} acks of event ${seq} after ${ACK_TIMEOUT_MS} ms`
              )
            ),
          ACK_TIMEOUT_MS
        )
        found.expected = count
        found.resolve = (latencies) => {
          clearTimeout(timer)
          resolve(latencies)
        }
        settle(seq, found)
      }),
    close: async () => {
      await node.run(Fiber.interrupt(fiber))
      await node.run(Scope.close(scope, Exit.void))
    }
  }
}

export const run = async ({ quick, log }) => {
  const settings = quick ? SETTINGS.quick : SETTINGS.full
  const { tiers, probes } = settings
  const count = Math.max(...tiers)
  let node
  const collectors = []
  let loopWatch
  try {
    node = await startNode()
    const directory = fixturePlugin("subscriber")
    const indexes = Array.from({ length: count }, (_, i) => i)
    log(`fanout: starting ${count} subprocess and ${count} in-process subscribers`)
    // Setup only (not measured): four plugin starts at a time.
    await pool(indexes, 4, (index) =>
      startSubprocessPlugin(node, directory, {
        id: `bench.sub.p${index}`,
        config: { index, tiers, topic: "fan" }
      })
    )
    for (const index of indexes) {
      await startInProcessPlugin(node, makeSubscriber({ id: `bench.sub.local${index}` }), {
        index,
        tiers,
        topic: "fanlocal"
      })
    }
    const acks = {
      fan: await collectAcks(node, "bench.fanack.*"),
      fanlocal: await collectAcks(node, "bench.fanlocalack.*")
    }
    collectors.push(acks.fan, acks.fanlocal)
    const droppedBefore = (await node.run(Effect.flatMap(EventBus, (bus) => bus.stats))).dropped

    let seq = 0
    const publish = (bus, type, ack) =>
      bus.publish({
        type,
        source: "core",
        data: { seq: ++seq, sentNs: Number(process.hrtime.bigint()), ack }
      })

    // Both sides hand the event loop back (setImmediate) between batches and probes when it has not
    // turned for 100 ms. Without it the in-process side runs entirely in microtasks (Effect's
    // scheduler and promise chains: the host's event loop does not turn for the whole round), and
    // when that lasts longer than the heartbeat deadline (3 s) the host kills every subprocess
    // subscriber as hung: the first timer after the stall runs before the pending heartbeat replies
    // are read. The subject side waits on I/O for its acks, so the loop turns anyway and this rule
    // practically never fires there (a yield per batch would shrink its stream chunks).
    let lastTurn = performance.now()
    loopWatch = setInterval(() => {
      lastTurn = performance.now()
    }, 20)
    const turnEventLoop = Effect.suspend(() =>
      performance.now() - lastTurn < 100
        ? Effect.void
        : Effect.async((resume) => {
            setImmediate(() => resume(Effect.void))
          })
    )

    const throughput = (topic, tier, events) =>
      node.run(
        Effect.gen(function* () {
          const bus = yield* EventBus
          const type = `bench.${topic}.t${tier}`
          const lastOfBatch = []
          const unacked = windowFor(tier)
          const start = now()
          for (let batch = 0; batch * BATCH < events; batch++) {
            if (batch >= unacked)
              yield* Effect.promise(() => acks[topic].waitFor(lastOfBatch[batch - unacked], tier))
            for (let i = 0; i < BATCH; i++) yield* publish(bus, type, i === BATCH - 1)
            lastOfBatch.push(seq)
            yield* turnEventLoop
          }
          for (let batch = Math.max(0, lastOfBatch.length - unacked); batch < lastOfBatch.length; batch++) {
            yield* Effect.promise(() => acks[topic].waitFor(lastOfBatch[batch], tier))
          }
          return (lastOfBatch.length * BATCH * tier) / (Number(now() - start) / 1e9)
        })
      )

    const latency = (topic, tier) =>
      node.run(
        Effect.gen(function* () {
          const bus = yield* EventBus
          const type = `bench.${topic}.t${tier}`
          const samples = []
          for (let i = 0; i < probes; i++) {
            yield* publish(bus, type, true)
            const latencies = yield* Effect.promise(() => acks[topic].waitFor(seq, tier))
            for (const ns of latencies) samples.push(ns / 1e3)
            // Each probe starts on a settled node: the acks' own calls have been answered.
            yield* Effect.sleep(PROBE_GAP_MS)
          }
          return { p50: percentile(samples, 50), p99: percentile(samples, 99) }
        })
      )

    // A missing ack names the subscribers that are not running (or were restarted), and why.
    // The host's event-loop delay is logged per side: a stall longer than the heartbeat deadline (3 s)
    // makes the host kill every subprocess plugin as hung.
    const side = (topic, tier) => async () => {
      const delay = monitorEventLoopDelay({ resolution: 20 })
      delay.enable()
      try {
        return {
          perSecond: await throughput(topic, tier, settings.events[tier]),
          ...(await latency(topic, tier))
        }
      } catch (error) {
        const plugins = await node.run(Effect.flatMap(PluginManager, (manager) => manager.list))
        const troubled = plugins.filter((plugin) => plugin.state !== "running" || plugin.restarts > 0)
        const why = troubled
          .slice(0, 5)
          .map((p) => `${p.id} ${p.state}, ${p.restarts} restarts, last exit ${JSON.stringify(p.lastExit)}`)
        throw new Error(`${error.message}; ${troubled.length} subscribers in trouble: ${why.join("; ")}`)
      } finally {
        delay.disable()
        const where = topic === "fan" ? "subprocess" : "in-process"
        log(`fanout ${tier} ${where}: host event-loop delay max ${(delay.max / 1e6).toFixed(0)} ms`)
      }
    }

    const measured = []
    for (const tier of tiers) {
      const warmup = settings.warmup[tier]
      const reps = settings.reps[tier]
      const rounds = await alternate({
        warmup,
        reps,
        onRound: (round, warm) =>
          log(`fanout ${tier} subscribers: round ${round + 1}/${warmup + reps}${warm ? " (warm-up)" : ""}`),
        sides: [
          { name: "inprocess", run: side("fanlocal", tier) },
          { name: "subprocess", run: side("fan", tier) }
        ]
      })
      measured.push({ tier, rounds, warmup, reps })
    }
    const dropped = (await node.run(Effect.flatMap(EventBus, (bus) => bus.stats))).dropped - droppedBefore

    const rows = []
    for (const { tier, rounds, warmup, reps } of measured) {
      const events = settings.events[tier]
      const notes =
        `subject: host EventBus.publish → ${tier} subprocess subscriber plugin(s) (Events.on through the ` +
        "sandbox; each event an @effect/rpc stream chunk over the plugin's extra stdio pipe, fd 3, Blackhole " +
        "framing), event data { seq, sentNs, ack } (~60 B JSON), sandbox permission (loader default); " +
        `baseline: the same publisher and ${tier} compiled-in copies of the subscriber (in-process bus, ` +
        "Events view over the EventBus), no channel, no framing, same data, sandbox n/a; " +
        `throughput: ${events} events per round in batches of ${BATCH}, at most ${windowFor(tier)} batches unacked ` +
        `(subscriber buffers 1024), ${dropped} events dropped in the whole scenario; latency: ${probes} ` +
        `events one at a time, ${PROBE_GAP_MS} ms apart, p99 over all deliveries; median of ${reps} rounds after ${warmup} warm-up, ` +
        "sides alternated in one process"
      rows.push(
        result({
          scenario: id,
          metric: `deliveries-per-second-${tier}`,
          unit: "deliveries/s",
          value: median(rounds.subprocess.map((r) => r.perSecond)),
          baseline: median(rounds.inprocess.map((r) => r.perSecond)),
          baselineName: "in-process bus",
          better: "higher",
          target: tier === 10 ? { on: "value", op: ">=", value: 100_000 } : null,
          notes
        }),
        result({
          scenario: id,
          metric: `p99-latency-${tier}`,
          unit: "µs",
          value: median(rounds.subprocess.map((r) => r.p99)),
          baseline: median(rounds.inprocess.map((r) => r.p99)),
          baselineName: "in-process bus",
          better: "lower",
          target: null,
          notes:
            `${notes}; for reference the p50s: subject ` +
            `${median(rounds.subprocess.map((r) => r.p50)).toFixed(0)} µs, baseline ` +
            `${median(rounds.inprocess.map((r) => r.p50)).toFixed(0)} µs`
        })
      )
    }
    return rows
  } finally {
    clearInterval(loopWatch)
    for (const collector of collectors) await collector.close().catch(() => {})
    await node?.close().catch((error) => log(`fanout: node close failed: ${error}`))
    await reapAll()
  }
}
