import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as PluginManifest from "@blackhole/sdk/PluginManifest"
import { it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as NodeTest from "../src/NodeTest.js"
import { PluginManager } from "../src/PluginManager.js"
import * as Principal from "../src/Principal.js"
import { ServiceRegistry } from "../src/ServiceRegistry.js"
import * as SubprocessLoader from "../src/SubprocessLoader.js"
import { Conformance } from "./fixtures/plugins/conformance/contract.mjs"
import definition from "./fixtures/plugins/conformance/index.mjs"

const directory = fileURLToPath(new URL("./fixtures/plugins/conformance/", import.meta.url))
const id = "com.blackhole.test.conformance"
for (const kind of ["inprocess", "subprocess"]) {
  it.scopedLive(`probe ${kind}`, () =>
    Effect.gen(function* () {
      const manager = yield* PluginManager
      const registry = yield* ServiceRegistry
      if (kind === "inprocess") yield* manager.register(definition, { config: { label: kind } })
      else {
        const manifest = yield* PluginManifest.decodeJson(
          fs.readFileSync(path.join(directory, "plugin.json"), "utf8"),
          directory
        )
        yield* manager.registerWith(manifest, SubprocessLoader.make({ directory, manifest }), {
          config: { label: kind }
        })
      }
      let t = Date.now()
      yield* manager.start(id)
      console.log(kind, "start ms", Date.now() - t, yield* manager.get(id))
      const client = registry.client(Principal.operator, Conformance)
      const inflight = yield* Effect.fork(Effect.exit(client.sleep({ millis: 3000 })))
      yield* client.pid()
      t = Date.now()
      yield* manager.stop(id)
      console.log(kind, "stop ms", Date.now() - t, yield* manager.get(id))
      const exit = yield* Fiber.join(inflight)
      console.log(kind, "in-flight after stop", Date.now() - t, "ms", exit)
    }).pipe(Effect.provide(NodeTest.layer()))
  )
}
