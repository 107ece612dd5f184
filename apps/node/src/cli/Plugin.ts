/**
 * `blackhole plugin …`: list, inspect and operate the running node's plugins
 * over its HTTP API; `validate` and `new` work locally on a plugin directory.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import type * as AdminApi from "../AdminApi.js"
import * as AdminClient from "./AdminClient.js"
import * as CliError from "./CliError.js"
import * as Flags from "./Flags.js"
import * as Output from "./Output.js"
import * as PluginNew from "./PluginNew.js"
import * as PluginValidate from "./PluginValidate.js"
import * as Status from "./Status.js"

const pluginId = Args.text({ name: "id" }).pipe(
  Args.withDescription("The plugin's id, e.g. dev.blackhole.analytics.")
)

/** `blackhole plugin list [--json]` */
export const list = Command.make("list", { ...Flags.remoteOptions, json: Flags.json }, (own) =>
  Effect.gen(function* () {
    const flags = yield* Flags.inherit(own)
    const target = yield* AdminClient.target(flags)
    const plugins = yield* AdminClient.withClient(target, (client) => client.plugins.list())
    yield* flags.json ? Output.json(plugins) : Output.line(Status.pluginTable(plugins))
  })
).pipe(Command.withDescription("List the running node's plugins and their state."))

const lastExit = (exit: AdminApi.PluginDetail["lastExit"]): string =>
  exit === null
    ? "-"
    : [
        exit.reason,
        exit.code === null ? undefined : `code ${exit.code}`,
        exit.signal === null ? undefined : exit.signal,
        `at ${exit.at}`
      ]
        .filter((part) => part !== undefined)
        .join(", ")

const listOrDash = (items: ReadonlyArray<string>) => (items.length === 0 ? "-" : items.join(", "))

/** One plugin's details as aligned fields. */
export const detail = (plugin: AdminApi.PluginDetail): string => {
  const p = Output.out()
  const dependencies = Object.entries(plugin.dependencies).map(([id, range]) => `${id} ${range}`)
  return Output.fields([
    ["id", p.bold(plugin.id)],
    ["name", plugin.name],
    ["version", plugin.version],
    ["type", plugin.type],
    ["loader", plugin.loader],
    ["state", Output.state(plugin.state)],
    ...(plugin.error === null ? [] : [["error", p.red(plugin.error)] as const]),
    ...(plugin.health === null
      ? []
      : [
          [
            "health",
            `${plugin.health.status === "healthy" ? p.green(plugin.health.status) : p.yellow(plugin.health.status)}${plugin.health.details === undefined ? "" : ` (${plugin.health.details})`}`
          ] as const
        ]),
    ["restarts", String(plugin.restarts)],
    ["pid", plugin.pid === null ? "-" : String(plugin.pid)],
    ["memory", Output.bytes(plugin.memoryBytes)],
    ["last exit", lastExit(plugin.lastExit)],
    ["granted", listOrDash(plugin.granted)],
    ["dependencies", listOrDash(dependencies)],
    ["services", listOrDash(plugin.services)],
    ["routes", listOrDash(plugin.routes)]
  ])
}

/** `blackhole plugin info <id> [--json]` */
export const info = Command.make("info", { ...Flags.remoteOptions, json: Flags.json, id: pluginId }, (own) =>
  Effect.gen(function* () {
    const flags = yield* Flags.inherit(own)
    const target = yield* AdminClient.target(flags)
    const plugin = yield* AdminClient.withClient(target, (client) =>
      client.plugins.get({ path: { id: flags.id } })
    )
    yield* flags.json ? Output.json(plugin) : Output.line(detail(plugin))
  })
).pipe(Command.withDescription("Show one plugin: state, process, last exit, grants, services, routes."))

const operation = (name: "start" | "stop" | "reload", description: string) =>
  Command.make(name, { ...Flags.remoteOptions, json: Flags.json, id: pluginId }, (own) =>
    Effect.gen(function* () {
      const flags = yield* Flags.inherit(own)
      const target = yield* AdminClient.target(flags)
      const result = yield* AdminClient.withClient(target, (client) =>
        AdminClient.operation(client, name, flags.id)
      )
      if (flags.json) {
        yield* Output.json(result)
      } else if (!result.done) {
        yield* Output.line(
          `${name} of ${result.id} is still in progress (state: ${Output.state(result.state)}); follow it with \`blackhole plugin info ${result.id}\``
        )
      } else {
        yield* Output.line(`${result.id}: ${Output.state(result.state)}`)
      }
      if (
        result.error !== null &&
        (result.done || result.state === "failed" || result.state === "quarantined")
      ) {
        return yield* CliError.failure(`${name} of ${result.id} failed: ${result.error}`)
      }
    })
  ).pipe(Command.withDescription(description))

/** `blackhole plugin start <id>` */
export const start = operation("start", "Start a plugin (also lifts a quarantine) and print its state.")
/** `blackhole plugin stop <id>` */
export const stop = operation("stop", "Stop a plugin and print its state.")
/** `blackhole plugin reload <id>` */
export const reload = operation("reload", "Restart a plugin, reloading its code, and print its state.")

const level = Args.choice(
  [
    ["debug", "debug"],
    ["info", "info"],
    ["warn", "warn"],
    ["error", "error"]
  ] as const,
  { name: "level" }
).pipe(Args.withDescription("The lowest level of the plugin's own log lines that reaches the node log."))

/** `blackhole plugin log-level <id> <level>` */
export const logLevel = Command.make(
  "log-level",
  { ...Flags.remoteOptions, json: Flags.json, id: pluginId, level },
  (own) =>
    Effect.gen(function* () {
      const flags = yield* Flags.inherit(own)
      const target = yield* AdminClient.target(flags)
      const result = yield* AdminClient.withClient(target, (client) =>
        client.plugins.logLevel({ path: { id: flags.id }, payload: { level: flags.level } })
      )
      yield* flags.json ? Output.json(result) : Output.line(`${result.id}: log level ${result.level}`)
    })
).pipe(
  Command.withDescription(
    "Set which of a plugin's log lines reach the node log, at runtime (debug lines need the node at debug level: --dev)."
  )
)

const seconds = Options.integer("seconds").pipe(
  Options.withDefault(10),
  Options.withDescription("How long to profile, 1–300 s.")
)

/** `blackhole plugin profile <id> [--seconds N]` */
export const profile = Command.make(
  "profile",
  { ...Flags.remoteOptions, json: Flags.json, id: pluginId, seconds },
  (own) =>
    Effect.gen(function* () {
      const flags = yield* Flags.inherit(own)
      if (flags.seconds < 1 || flags.seconds > 300) {
        return yield* CliError.usage(`--seconds must be between 1 and 300, got ${flags.seconds}`)
      }
      const target = yield* AdminClient.target(flags)
      const result = yield* AdminClient.withClient(target, (client) =>
        client.plugins.profile({ path: { id: flags.id }, payload: { seconds: flags.seconds } })
      )
      yield* flags.json
        ? Output.json(result)
        : Output.line(`${result.id}: CPU profile written to ${result.file}`)
    })
).pipe(
  Command.withDescription(
    "Profile a subprocess plugin's CPU for a while (debug mode): it is restarted under V8's --prof and back; the report goes to <data>/profiles/."
  )
)

/** `blackhole plugin sync <id>` */
export const sync = Command.make("sync", { ...Flags.remoteOptions, json: Flags.json, id: pluginId }, (own) =>
  Effect.gen(function* () {
    const flags = yield* Flags.inherit(own)
    const target = yield* AdminClient.target(flags)
    const result = yield* AdminClient.withClient(target, (client) =>
      client.plugins.sync({ path: { id: flags.id } })
    )
    yield* flags.json ? Output.json(result) : Output.line(`${result.id}: synced`)
  })
).pipe(Command.withDescription("Run an integration plugin's sync now (e.g. retry a webhook's dead letters)."))

/** `blackhole plugin …` */
export const command = Command.make("plugin").pipe(
  Command.withDescription("Operate the running node's plugins; validate or create a plugin package."),
  Command.withSubcommands([
    list,
    info,
    PluginValidate.command,
    reload,
    start,
    stop,
    logLevel,
    profile,
    sync,
    PluginNew.command
  ])
)
