/**
 * `blackhole plugin …`: list, inspect and operate the running node's plugins
 * over its HTTP API; `validate` and `new` work locally on a plugin directory.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
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

/** `blackhole plugin …` */
export const command = Command.make("plugin").pipe(
  Command.withDescription("Operate the running node's plugins; validate or create a plugin package."),
  Command.withSubcommands([list, info, PluginValidate.command, reload, start, stop, PluginNew.command])
)
