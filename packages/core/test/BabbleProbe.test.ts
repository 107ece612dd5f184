import * as fs from "node:fs"
import * as Framing from "@blackhole/sdk/Framing"
import * as PluginManifest from "@blackhole/sdk/PluginManifest"
import { it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as NodeTest from "../src/NodeTest.js"
import { PluginManager } from "../src/PluginManager.js"
import * as Principal from "../src/Principal.js"
import { ServiceRegistry } from "../src/ServiceRegistry.js"
import * as SubprocessLoader from "../src/SubprocessLoader.js"

const cases: Array<[string, Buffer]> = [
  ["toClient nonsense", Framing.encode(2, { _tag: "Nonsense" })],
  ["toClient number", Framing.encode(2, 42)],
  ["toClient null", Framing.encode(2, null)],
  ["toClient exit bogus", Framing.encode(2, { _tag: "Exit", requestId: "123", exit: { _tag: "Bogus" } })],
  ["toServer nonsense", Framing.encode(1, { _tag: "Nonsense" })],
  [
    "toServer request unknown tag",
    Framing.encode(1, { _tag: "Request", id: "77", tag: "NoSuch", payload: {}, headers: [] })
  ],
  [
    "toServer request bad payload",
    Framing.encode(1, { _tag: "Request", id: "78", tag: "StorageStore", payload: { key: 5 }, headers: [] })
  ],
  ["heartbeat string", Framing.encode(3, "x")],
  ["handshake again", Framing.encode(0, { type: "hello" })]
]
it.scopedLive(
  "probe",
  () =>
    Effect.gen(function* () {
      const directory = new URL("./fixtures/plugins/fault-babbler", import.meta.url).pathname
      const manifest = yield* PluginManifest.decodeJson(
        fs.readFileSync(`${directory}/plugin.json`, "utf8"),
        directory
      )
      const manager = yield* PluginManager
      yield* manager.registerWith(manifest, SubprocessLoader.make({ directory, manifest }), {
        restart: { policy: "never" }
      })
      yield* manager.start(manifest.id)
      const registry = yield* ServiceRegistry
      for (const [name, bytes] of cases) {
        const r = yield* Effect.exit(
          registry.call(Principal.operator, "babbler", "write", { hex: bytes.toString("hex") })
        )
        yield* Effect.sleep(500)
        const pid = yield* Effect.exit(
          registry.call(Principal.operator, "babbler", "pid", undefined).pipe(Effect.timeout(2000))
        )
        const i = yield* manager.get(manifest.id)
        console.log(
          name,
          "=>",
          r._tag,
          "pid:",
          JSON.stringify(pid).slice(0, 200),
          i.state,
          JSON.stringify(i.lastExit)
        )
        if (i.state !== "running") {
          yield* manager.start(manifest.id)
        }
      }
    }).pipe(Effect.provide(NodeTest.layer())),
  60000
)
