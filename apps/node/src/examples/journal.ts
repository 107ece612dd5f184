/** Example plugin: counts every event per type in its storage and serves the counts on the mesh. */

import * as Events from "@blackhole/sdk/Events"
import * as Plugin from "@blackhole/sdk/Plugin"
import * as PluginConfig from "@blackhole/sdk/PluginConfig"
import * as PluginLogger from "@blackhole/sdk/PluginLogger"
import * as PluginStorage from "@blackhole/sdk/PluginStorage"
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"

/** The journal's contract: callers import this, not the implementation. */
export const JournalContract = ServiceContract.make(
  "journal",
  RpcGroup.make(
    ServiceContract.read(
      Rpc.make("counts", { success: Schema.Record({ key: Schema.String, value: Schema.Number }) })
    )
  )
)

const Counts = Schema.Record({ key: Schema.String, value: Schema.Number })

export default Plugin.service({
  manifest: {
    id: "dev.blackhole.example.journal",
    name: "Journal (example)",
    version: "0.1.0",
    type: "service",
    description: "Counts events by type",
    permissions: ["events:subscribe:*", "storage:read", "storage:write"],
    services: ["journal"]
  },
  config: PluginConfig.none,
  program: Effect.gen(function* () {
    // Handlers have no requirements: provide the storage they use once, here.
    const storage = yield* PluginStorage.PluginStorage
    const load = PluginStorage.retrieveJson("counts", Counts).pipe(
      Effect.map(Option.getOrElse((): typeof Counts.Type => ({}))),
      Effect.provideService(PluginStorage.PluginStorage, storage)
    )
    yield* Events.on("*", (event) =>
      Effect.gen(function* () {
        const counts = yield* load
        const next = { ...counts, [event.type]: (counts[event.type] ?? 0) + 1 }
        yield* PluginStorage.storeJson("counts", Counts, next)
        yield* PluginLogger.info(`${event.type} from ${event.source} (#${next[event.type]})`)
      })
    )
    return {
      services: [ServiceContract.implement(JournalContract, { counts: () => Effect.orDie(load) })]
    }
  })
})
