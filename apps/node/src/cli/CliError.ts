/**
 * How a command ends when it does not succeed: a message for stderr and the
 * process exit code. Every command fails only with `CliError` (or @effect/cli's
 * own `ValidationError` for arguments it rejected while parsing).
 */
import * as Data from "effect/Data"

/** The exit codes of `blackhole`, documented in its help. */
export const ExitCode = {
  /** The command did what was asked. */
  ok: 0,
  /** The command failed, or what it checked is invalid (a plugin, a config, a call's answer). */
  failure: 1,
  /** The command line itself is wrong: unknown command or option, a malformed value. */
  usage: 2,
  /** The node's HTTP API did not answer (not running, wrong `--url`, timeout). */
  unreachable: 3
} as const
/** @see ExitCode */
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode]

/** A command's failure. An empty `message` means the command already printed what went wrong. */
export class CliError extends Data.TaggedError("CliError")<{
  readonly message: string
  readonly exitCode: ExitCode
}> {}

/** The command failed (exit 1). */
export const failure = (message: string): CliError => new CliError({ message, exitCode: ExitCode.failure })

/** The command line is wrong (exit 2). */
export const usage = (message: string): CliError => new CliError({ message, exitCode: ExitCode.usage })

/** The node did not answer (exit 3). */
export const unreachable = (message: string): CliError =>
  new CliError({ message, exitCode: ExitCode.unreachable })
