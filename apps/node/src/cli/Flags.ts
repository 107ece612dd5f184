/**
 * The options every command shares, the root command they may also be given
 * to (`blackhole --config x.yaml status` means the same as
 * `blackhole status --config x.yaml`), and loading the effective
 * configuration from them.
 */
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Config from "../Config.js"
import * as CliError from "./CliError.js"

const invalid = (message: string) => ValidationError.invalidValue(HelpDoc.p(message))

/** `--config FILE`: the YAML config (else `BLACKHOLE_CONFIG`, else `./blackhole.yaml` when present). */
export const config = Options.text("config").pipe(
  Options.withAlias("c"),
  Options.withPseudoName("FILE"),
  Options.withDescription(
    "The node's YAML config file (default: $BLACKHOLE_CONFIG, else ./blackhole.yaml when it exists, else the embedded defaults)."
  ),
  Options.optional
)

/** `--data-dir DIR`: overrides `node.data_dir` (where the admin token is). */
export const dataDir = Options.text("data-dir").pipe(
  Options.withPseudoName("DIR"),
  Options.withDescription("The node's data directory (overrides node.data_dir; default .blackhole)."),
  Options.optional
)

/** `--host H`: overrides `http.host`. */
export const host = Options.text("host").pipe(
  Options.withPseudoName("HOST"),
  Options.withDescription("Address the HTTP API listens on (overrides http.host; default 127.0.0.1)."),
  Options.optional
)

/** `--port N`: overrides `http.port`; checked here so a bad value is a usage error. */
export const port = Options.integer("port").pipe(
  Options.withPseudoName("N"),
  Options.mapEffect((n) =>
    n >= 0 && n <= 65535
      ? Effect.succeed(n)
      : Effect.fail(invalid(`--port must be between 0 and 65535 (got ${n})`))
  ),
  Options.withDescription("Port of the HTTP API (overrides http.port; default 7420; 0 picks a free port)."),
  Options.optional
)

/** `--dev`: hot reload, debug mode and verbose plugin logs. */
export const dev = Options.boolean("dev").pipe(
  Options.withDescription("Development mode: hot reload, debug mode, verbose plugin logs.")
)

/** `--url URL`: where the node's HTTP API is, for the commands that talk to it. */
export const url = Options.text("url").pipe(
  Options.withPseudoName("URL"),
  Options.mapEffect((text) => {
    try {
      const parsed = new URL(text)
      if (parsed.protocol === "http:" || parsed.protocol === "https:") return Effect.succeed(text)
    } catch {
      // Reported below.
    }
    return Effect.fail(invalid(`--url must be an http:// or https:// URL (got "${text}")`))
  }),
  Options.withDescription(
    "The node's HTTP API (default: http://<http.host>:<http.port> from the effective config)."
  ),
  Options.optional
)

/** `--json`: machine output, exactly the API's JSON. */
export const json = Options.boolean("json").pipe(
  Options.withDescription("Print the API's JSON instead of a table (for scripts).")
)

/** What `start` and `config print` take: everything that shapes the effective config. */
export const nodeOptions = { config, dataDir, host, port, dev }

/** What every other command takes. */
export const localOptions = { config, dataDir }

/** What the commands that talk to the running node take (`--host`/`--port` shape the default `--url`). */
export const remoteOptions = { config, dataDir, host, port, url }

/** The parsed `nodeOptions`. */
export interface NodeFlags {
  readonly config: Option.Option<string>
  readonly dataDir: Option.Option<string>
  readonly host: Option.Option<string>
  readonly port: Option.Option<number>
  readonly dev: boolean
}

/** The root command, before its handler and subcommands (which read its options through it). */
export const root = Command.make("blackhole", nodeOptions)

/**
 * A subcommand's own flags, completed by the node options given to
 * `blackhole` itself (which @effect/cli also accepts after the subcommand):
 * `blackhole status --port 7500` asks the node on port 7500.
 */
export const inherit = <F extends object>(
  own: F
): Effect.Effect<F & NodeFlags, never, Command.Command.Context<"blackhole">> =>
  Effect.map(root, (parent) => {
    const given = own as Partial<NodeFlags>
    const merged: Record<string, unknown> = { ...(own as Record<string, unknown>) }
    for (const key of ["config", "dataDir", "host", "port"] as const) {
      const value = given[key]
      if (value === undefined || Option.isNone(value as Option.Option<unknown>)) merged[key] = parent[key]
    }
    merged.dev = given.dev === true || parent.dev
    return merged as F & NodeFlags
  })

/** The config loader's flags from parsed options (only those given). */
export const toConfigFlags = (flags: Partial<NodeFlags>): Config.Flags => {
  const given = <A>(option: Option.Option<A> | undefined) =>
    option === undefined ? undefined : Option.getOrUndefined(option)
  const configFile = given(flags.config)
  const dataDirValue = given(flags.dataDir)
  const hostValue = given(flags.host)
  const portValue = given(flags.port)
  return {
    ...(configFile === undefined ? {} : { config: configFile }),
    ...(dataDirValue === undefined ? {} : { dataDir: dataDirValue }),
    ...(hostValue === undefined ? {} : { host: hostValue }),
    ...(portValue === undefined ? {} : { port: portValue }),
    ...(flags.dev === true ? { dev: true } : {})
  }
}

/** The effective configuration for these flags; a bad config is a failure (exit 1) naming file and path. */
export const loadConfig = (flags: Partial<NodeFlags>): Effect.Effect<Config.Config, CliError.CliError> =>
  Config.load(toConfigFlags(flags), process.env).pipe(
    Effect.mapError((error) => CliError.failure(error.message))
  )
