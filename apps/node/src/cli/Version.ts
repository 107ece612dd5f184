/**
 * Versions the CLI reports, without loading the node: `@blackhole/core`'s
 * modules take a second to import, which every command would pay.
 */
import * as fs from "node:fs"
import * as Effect from "effect/Effect"

/** This executable's version (apps/node's package.json, from `src/cli/` and `dist/cli/` alike). */
export const cli: string = (() => {
  try {
    const pkg: unknown = JSON.parse(fs.readFileSync(new URL("../../package.json", import.meta.url), "utf8"))
    const version = (pkg as { readonly version?: unknown }).version
    return typeof version === "string" ? version : "0.0.0"
  } catch {
    return "0.0.0"
  }
})()

/** The node version plugins are checked against (`BlackholeNode.version`), loaded when a command needs it. */
export const node: Effect.Effect<string> = Effect.promise(() => import("@blackhole/core/BlackholeNode")).pipe(
  Effect.map((module) => module.version)
)
