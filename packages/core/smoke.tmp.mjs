import * as NodeTest from "@blackhole/core/NodeTest"
import * as SubprocessLoader from "@blackhole/core/SubprocessLoader"
import { PluginManager } from "@blackhole/core/PluginManager"
import { ServiceRegistry } from "@blackhole/core/ServiceRegistry"
import * as PluginManifest from "@blackhole/sdk/PluginManifest"
import { Effect, Option } from "effect"
import * as fs from "node:fs"
const dir = "/work/main/packages/core/test/fixtures/plugins/echo"
const program = Effect.gen(function* () {
  const manifest = yield* PluginManifest.decodeJson(fs.readFileSync(dir + "/plugin.json", "utf8"), dir)
  const manager = yield* PluginManager
  yield* manager.registerWith(manifest, SubprocessLoader.make({ directory: dir, manifest }), { config: { prefix: ">" } })
  yield* manager.start(manifest.id)
  const reg = Option.getOrThrow((yield* ServiceRegistry).lookup("echo"))
  for (let round = 0; round < 3; round++) {
    let t = performance.now()
    for (let i = 0; i < 500; i++) yield* reg.dispatch("echo", { text: "x" })
    console.log("dispatch us/call", ((performance.now() - t) * 1000 / 500).toFixed(1))
  }
  yield* manager.stop(manifest.id)
})
Effect.runPromise(program.pipe(Effect.provide(NodeTest.layer()), Effect.scoped)).then(() => console.log("done"), (e) => console.error("ERR", e))
