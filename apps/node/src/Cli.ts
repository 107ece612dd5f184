/**
 * The `blackhole` command line: the command tree, and running it to an exit
 * code. `blackhole` with no command starts the node, like `blackhole start`.
 *
 * Exit codes: 0 ok; 1 failure or invalid (a config error, a failed call, an
 * invalid plugin, a degraded node for `status`); 2 usage error (unknown
 * command or option, malformed value); 3 the node's HTTP API did not answer.
 */
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as ValidationError from "@effect/cli/ValidationError"
import type * as Runtime from "@effect/platform/Runtime"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Call from "./cli/Call.js"
import { CliError, ExitCode } from "./cli/CliError.js"
import * as ConfigCommand from "./cli/ConfigCommand.js"
import * as Flags from "./cli/Flags.js"
import * as Output from "./cli/Output.js"
import * as Plugin from "./cli/Plugin.js"
import * as Start from "./cli/Start.js"
import * as Status from "./cli/Status.js"
import * as Version from "./cli/Version.js"

/** The whole command tree. */
export const command = Flags.root.pipe(
  Command.withHandler(Start.run),
  Command.withDescription("Run and operate a Blackhole node. With no command: `blackhole start`."),
  Command.withSubcommands([
    Start.command,
    Status.command,
    Call.command,
    ConfigCommand.command,
    Plugin.command
  ])
)

const footer = HelpDoc.blocks([
  HelpDoc.h1("EXIT CODES"),
  HelpDoc.p("0  ok"),
  HelpDoc.p("1  failure, or invalid (bad config, failed call, invalid plugin, degraded node for `status`)"),
  HelpDoc.p("2  usage error (unknown command or option, malformed argument)"),
  HelpDoc.p("3  the node's HTTP API did not answer (not running, wrong --url)"),
  HelpDoc.h1("MORE"),
  HelpDoc.p(
    "Run `blackhole <command> --help` for a command's options. Colours only on a terminal; NO_COLOR turns them off."
  )
])

const cli = Command.run(command, { name: "blackhole", version: Version.cli, footer })

/** What a failed command prints (its message, unless it printed already) and the exit code it means. */
const report = (cause: Cause.Cause<unknown>): Effect.Effect<number> => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const error = failure.value
    // @effect/cli printed the problem (and the usage) already.
    if (ValidationError.isValidationError(error)) return Effect.succeed(ExitCode.usage)
    if (error instanceof CliError) {
      return error.message === ""
        ? Effect.succeed(error.exitCode)
        : Effect.as(Output.errorLine(`${Output.err().red("error:")} ${error.message}`), error.exitCode)
    }
  }
  return Effect.as(Output.errorLine(`${Output.err().red("error:")} ${Cause.pretty(cause)}`), ExitCode.failure)
}

/** Runs the command line (`process.argv`) to its exit code; interruption (Ctrl-C) stays an interruption. */
export const run = (argv: ReadonlyArray<string>): Effect.Effect<number> =>
  cli(argv).pipe(
    Effect.as(ExitCode.ok as number),
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause) ? Effect.failCause(cause) : report(cause)
    ),
    Output.withColourPolicy,
    Effect.provide(NodeContext.layer),
    Effect.orDie
  )

/** `NodeRuntime.runMain`'s teardown: the exit code `run` returned; 0 after a graceful stop on a signal. */
export const teardown: Runtime.Teardown = (exit, onExit) => {
  if (Exit.isSuccess(exit)) return onExit(typeof exit.value === "number" ? exit.value : ExitCode.ok)
  onExit(Cause.isInterruptedOnly(exit.cause) ? ExitCode.ok : ExitCode.failure)
}
