/** Example plugin: publishes a `clock.tick` event every few seconds. */
import * as Events from "@blackhole/sdk/Events"
import * as Plugin from "@blackhole/sdk/Plugin"
import * as PluginConfig from "@blackhole/sdk/PluginConfig"
import * as PluginLogger from "@blackhole/sdk/PluginLogger"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"

const Config = PluginConfig.make(
  Schema.Struct({
    /** Seconds between ticks. */
    intervalSeconds: Schema.optionalWith(Schema.Number.pipe(Schema.positive()), { default: () => 5 })
  })
)

export default Plugin.integration({
  manifest: {
    id: "dev.blackhole.example.clock",
    name: "Clock (example)",
    version: "0.1.0",
    type: "integration",
    description: "Publishes clock.tick events",
    permissions: ["events:publish:clock.tick"]
  },
  config: Config,
  program: Effect.gen(function* () {
    const { intervalSeconds } = yield* Config
    // Handlers have no requirements: take the services they use from the context once.
    const events = yield* Events.Events
    let n = 0
    const tick = Effect.suspend(() => events.publish("clock.tick", { n: ++n, at: new Date().toISOString() }))
    yield* PluginLogger.info(`ticking every ${intervalSeconds} s`)
    // Lives in the plugin's Scope: stopping the plugin interrupts it.
    yield* tick.pipe(Effect.repeat(Schedule.spaced(`${intervalSeconds} seconds`)), Effect.forkScoped)
    return { integration: { kind: "clock", sync: Effect.orDie(tick) } }
  })
})
