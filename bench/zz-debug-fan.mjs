import { startNode, startSubprocessPlugin, fixturePlugin } from "./lib/node.mjs"
import * as EventBusModule from "@blackhole/core/EventBus"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as Scope from "effect/Scope"
const { EventBus } = EventBusModule
const node = await startNode()
try {
  await startSubprocessPlugin(node, fixturePlugin("subscriber"), { id: "bench.sub.p0", config: { index: 0, tiers: [1], topic: "fan" } })
  const got = []
  const scope = await node.run(Scope.make())
  const sub = await node.run(Effect.flatMap(EventBus, (bus) => bus.subscribe("bench.fanack.*", { capacity: 1 << 16 })).pipe(Scope.extend(scope)))
  node.runtime.runFork(Stream.runForEach(sub.stream, (e) => Effect.sync(() => got.push(e.data.seq))))
  const N = Number(process.argv[2] ?? 200), every = Number(process.argv[3] ?? 64)
  await node.run(Effect.gen(function* () {
    const bus = yield* EventBus
    for (let i = 1; i <= N; i++) yield* bus.publish({ type: "bench.fan.t1", source: "core", data: { seq: i, sentNs: 0, ack: i % every === 0 } })
  }))
  await new Promise((r) => setTimeout(r, 3000))
  console.log("acks", got.length, got.slice(0, 10), "stats", await node.run(Effect.flatMap(EventBus, (b) => b.stats)))
} finally { await node.close() }
