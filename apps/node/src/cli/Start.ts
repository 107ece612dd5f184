/**
 * `blackhole start` (also what `blackhole` with no command does): runs the
 * node with the effective configuration until SIGINT/SIGTERM.
 */
import * as Command from "@effect/cli/Command"
import * as Effect from "effect/Effect"
import * as Predicate from "effect/Predicate"
import * as CliError from "./CliError.js"
import * as Flags from "./Flags.js"
import * as Output from "./Output.js"

/** An error's tag and message, with those of its causes where it has none of its own (e.g. `EADDRINUSE`). */
export const describe = (error: unknown): string => {
  const parts: Array<string> = []
  let current: unknown = error
  for (let depth = 0; depth < 5 && current !== undefined && current !== null; depth++) {
    const tag = Predicate.hasProperty(current, "_tag") ? String(current._tag) : undefined
    const message = Predicate.hasProperty(current, "message") ? String(current.message) : undefined
    const text = [tag, message].filter((part) => part !== undefined && part !== "").join(": ")
    if (text !== "" && !parts.includes(text)) parts.push(text)
    if (message !== undefined && message !== "") break
    current = Predicate.hasProperty(current, "cause") ? current.cause : undefined
  }
  return parts.length === 0 ? String(error) : parts.join(": ")
}

/** Loads the config and runs the node; a progress display while plugins start when stdout is a terminal. */
export const run = (flags: Flags.NodeFlags): Effect.Effect<void, CliError.CliError> =>
  Effect.gen(function* () {
    const config = yield* Flags.loadConfig(flags)
    // Loaded here, not at the top: the node's modules cost every other command a second of start-up.
    const Node = yield* Effect.promise(() => import("../Node.js"))
    yield* Node.run(config, { progress: Output.isInteractive() }).pipe(
      Effect.mapError((error) => CliError.failure(`the node stopped: ${describe(error)}`))
    )
  })

/** `blackhole start [--config FILE] [--data-dir DIR] [--port N] [--host H] [--dev]` */
export const command = Command.make("start", Flags.nodeOptions, (own) =>
  Effect.flatMap(Flags.inherit(own), run)
).pipe(Command.withDescription("Start the node in the foreground; Ctrl-C or SIGTERM stops it gracefully."))
