// Example subprocess plugin (plain JavaScript): discovered by `npm start` and run in its own process.

import * as Events from "@blackhole/sdk/Events"
import * as Plugin from "@blackhole/sdk/Plugin"
import * as PluginConfig from "@blackhole/sdk/PluginConfig"
import * as PluginLogger from "@blackhole/sdk/PluginLogger"
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

export const Greeter = ServiceContract.make(
  "greeter",
  RpcGroup.make(
    ServiceContract.read(Rpc.make("greet", { payload: { name: Schema.String }, success: Schema.String }))
  )
)

export default Plugin.service({
  manifest: {
    id: "dev.blackhole.example.greeter",
    name: "Greeter (example, subprocess)",
    version: "0.1.0",
    type: "service",
    services: ["greeter"]
  },
  config: PluginConfig.none,
  program: Effect.gen(function* () {
    const events = yield* Events.Events
    yield* PluginLogger.info(`greeter running in process ${process.pid}`)
    yield* Events.on("clock.tick", (event) =>
      Effect.orDie(events.publish("greeter.hello", { to: event.source, pid: process.pid }))
    )
    return {
      services: [
        ServiceContract.implement(Greeter, {
          greet: ({ name }) => Effect.succeed(`hello, ${name}, from ${process.pid}`)
        })
      ]
    }
  })
})
