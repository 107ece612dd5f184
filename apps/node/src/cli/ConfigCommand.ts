/**
 * `blackhole config print`: the effective configuration (embedded defaults,
 * file, `BLACKHOLE_*` environment, flags), in the config file's own shape.
 */
import * as Command from "@effect/cli/Command"
import * as Effect from "effect/Effect"
import * as YAML from "yaml"
import * as Config from "../Config.js"
import * as Flags from "./Flags.js"
import * as Output from "./Output.js"

/** `blackhole config print [--json]` with the same options as `start`. */
export const print = Command.make("print", { ...Flags.nodeOptions, json: Flags.json }, (own) =>
  Effect.gen(function* () {
    const flags = yield* Flags.inherit(own)
    const config = yield* Flags.loadConfig(flags)
    const yaml = Config.toYaml(config)
    // The JSON form is the same document, so either output is a valid config file.
    yield* flags.json ? Output.json(YAML.parse(yaml)) : Output.line(yaml.trimEnd())
  })
).pipe(
  Command.withDescription("Print the effective config (defaults < file < BLACKHOLE_* env < flags) as YAML.")
)

/** `blackhole config …` */
export const command = Command.make("config").pipe(
  Command.withDescription("Inspect the node's configuration."),
  Command.withSubcommands([print])
)
