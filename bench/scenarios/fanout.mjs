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
//   throughput  `events` events published in batches of BATCH, at most WINDOW batches unacknowledged
//               (WINDOW × BATCH stays well under the default 1024-event subscriber buffer: nothing is
//               dropped, which the scenario checks); the last event of a batch asks every subscriber
//               for an ack (an event back to the host). Deliveries/s = events × subscribers ÷ (first
//               publish → last ack).
//   latency     `probes` events one at a time, each acked by every subscriber before the next; every
//               subscriber reports publish→deliver as it saw it (process.hrtime on both ends: the
//               same system-wide monotonic clock). p99 over all deliveries of the round.
import * as EventBusModule from "@blackhole/core/EventBus"
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
const WINDOW = 4
const ACK_TIMEOUT_MS = 30_000

const SETTINGS = {
  quick: { tiers: [1, 10], events: { 1: 1_024, 10: 512 }, probes: 30, warmup: 1, reps: 3 },
  full: { tiers: [1, 10, 50], events: { 1: 4_096, 10: 2_048, 50: 1_024 }, probes: 100, warmup: 1, reps: 5 }
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
    Effect.flatMap(EventBus, (bus) => bus.subscribe(pattern, { capacity: 1 << 16, subscriber: "bench" })).pipe(
      Scope.extend(scope)
    )
  )
  const fiber = node.runtime.runFork(
    Stream.runForEach(subscription.stream, (event) => Effect.sync(() => onAck(event.data)))
  )
  return {
    waitFor: (seq, count) =>
      new Promise((resolve, reject) => {
        const found = entry(seq)
        const timer = setTimeout(
          () => reject(new Error(`fanout: ${found.latencies.length}/${count} acks of event ${seq} after ${ACK_TIMEOUT_MS} ms`)),
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
  const { tiers, probes, warmup, reps } = settings
  const count = Math.max(...tiers)
  let node
  const collectors = []
  try {
    node = await startNode()
    const directory = fixturePlugin("subscriber")
    const indexes = Array.from({ length: count }, (_, i) => i)
    log(`fanout: starting ${count} subprocess and ${count} in-process subscribers`)
    // Setup only (not measured): four plugin starts at a time.
    await pool(indexes, 4, (index) =>
      startSubprocessPlugin(node, directory, { id: `bench.sub.p${index}`, config: { index, tiers, topic: "fan" } })
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
      bus.publish({ type, source: "core", data: { seq: ++seq, sentNs: Number(process.hrtime.bigint()), ack } })

    const throughput = (topic, tier, events) =>
      node.run(
        Effect.gen(function* () {
          const bus = yield* EventBus
          const type = `bench.${topic}.t${tier}`
          const lastOfBatch = []
          const start = now()
          for (let batch = 0; batch * BATCH < events; batch++) {
            if (batch >= WINDOW) yield* Effect.promise(() => acks[topic].waitFor(lastOfBatch[batch - WINDOW], tier))
            for (let i = 0; i < BATCH; i++) yield* publish(bus, type, i === BATCH - 1)
            lastOfBatch.push(seq)
          }
          for (let batch = Math.max(0, lastOfBatch.length - WINDOW); batch < lastOfBatch.length; batch++) {
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
          }
          return percentile(samples, 99)
        })
      )

    const side = (topic, tier) => async () => ({
      perSecond: await throughput(topic, tier, settings.events[tier]),
      p99: await latency(topic, tier)
    })

    const measured = []
    for (const tier of tiers) {
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
      measured.push({ tier, rounds })
    }
    const dropped = (await node.run(Effect.flatMap(EventBus, (bus) => bus.stats))).dropped - droppedBefore

    const rows = []
    for (const { tier, rounds } of measured) {
      const events = settings.events[tier]
      const notes =
        `subject: host EventBus.publish → ${tier} subprocess subscriber plugin(s) (Events.on through the ` +
        "sandbox; each event an @effect/rpc stream chunk over the plugin's extra stdio pipe, fd 3, Blackhole " +
        "framing), event data { seq, sentNs, ack } (~60 B JSON), sandbox permission (loader default); " +
        `baseline: the same publisher and ${tier} compiled-in copies of the subscriber (in-process bus, ` +
        "Events view over the EventBus), no channel, no framing, same data, sandbox n/a; " +
        `throughput: ${events} events per round in batches of ${BATCH}, at most ${WINDOW} batches unacked ` +
        `(subscriber buffers 1024), ${dropped} events dropped in the whole scenario; latency: ${probes} ` +
        `events one at a time, p99 over all deliveries; median of ${reps} rounds after ${warmup} warm-up, ` +
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
          notes
        })
      )
    }
    return rows
  } finally {
    for (const collector of collectors) await collector.close().catch(() => {})
    await node?.close().catch((error) => log(`fanout: node close failed: ${error}`))
    await reapAll()
  }
}
