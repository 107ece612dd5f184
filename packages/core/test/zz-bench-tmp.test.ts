import { it } from "vitest"
import * as Effect from "effect/Effect"
import * as EventBus from "../src/EventBus.js"
import * as HookRegistry from "../src/HookRegistry.js"
const time = (label: string, n: number, eff: Effect.Effect<unknown>) => Effect.gen(function* () {
  const t = performance.now()
  for (let i = 0; i < n; i++) yield* eff
  console.log(`${label}: ${((performance.now() - t) * 1000 / n).toFixed(3)} µs/op`)
})
it("bench", async () => {
  await Effect.runPromise(Effect.scoped(Effect.gen(function* () {
    const bus = yield* EventBus.make()
    for (let i = 0; i < 20; i++) yield* bus.subscribe(i % 2 ? "content.*" : "user.*", { overflow: "sliding" })
    const input = { type: "content.created", source: "core", data: { x: 1 } }
    yield* time("baseline Effect.void", 1_000_000, Effect.void)
    yield* time("publish (10 matching of 20)", 1_000_000, bus.publish(input))
    const hooks = yield* HookRegistry.make()
    yield* time("hook run, none", 1_000_000, hooks.run("storage.before.write", {}))
    yield* hooks.register("storage.before.write", "core", () => Effect.void)
    yield* time("hook run, 1 before hook", 100_000, hooks.run("storage.before.write", {}))
    yield* time("timeoutOption only", 100_000, Effect.timeoutOption(Effect.void, 1000))
    yield* time("disconnect only", 100_000, Effect.disconnect(Effect.void))
  })))
}, 120_000)
