/**
 * `blackhole status`: the running node's health and its plugins, from
 * `GET /health` and `GET /api/plugins`.
 */
import * as Command from "@effect/cli/Command"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as AdminApi from "../AdminApi.js"
import * as AdminClient from "./AdminClient.js"
import * as CliError from "./CliError.js"
import * as Flags from "./Flags.js"
import * as Output from "./Output.js"

/** The plugins as an aligned table. */
export const pluginTable = (plugins: ReadonlyArray<AdminApi.PluginSummary>): string =>
  plugins.length === 0
    ? "no plugins are installed"
    : Output.table(
        ["ID", "NAME", "VERSION", "TYPE", "LOADER", "STATE", "RESTARTS", "PID", "MEMORY"],
        plugins.map((p) => [
          p.id,
          p.name,
          p.version,
          p.type,
          p.loader,
          Output.state(p.state),
          String(p.restarts),
          p.pid === null ? "-" : String(p.pid),
          Output.bytes(p.memoryBytes)
        ]),
        ["left", "left", "left", "left", "left", "left", "right", "right", "right"]
      )

/** `blackhole status [--json]`: exit 0 when the node is ok, 1 when degraded, starting or stopping. */
export const command = Command.make("status", { ...Flags.remoteOptions, json: Flags.json }, (own) =>
  Effect.gen(function* () {
    const flags = yield* Flags.inherit(own)
    const target = yield* AdminClient.target(flags)
    const { health, plugins } = yield* AdminClient.withClient(target, (client) =>
      Effect.all(
        {
          // 503 while starting or stopping: its body says which.
          health: client.health.health().pipe(
            Effect.map(Either.right),
            Effect.catchTag("NotReady", (notReady) => Effect.succeed(Either.left(notReady)))
          ),
          plugins: client.plugins.list()
        },
        { concurrency: "unbounded" }
      )
    )
    const body = Either.isRight(health)
      ? health.right
      : { _tag: health.left._tag, status: health.left.status, message: health.left.message }
    const status = Either.isRight(health) ? health.right.status : health.left.status
    if (flags.json) {
      yield* Output.json({ health: body, plugins })
    } else {
      const p = Output.out()
      const colour = status === "ok" ? p.green : status === "degraded" ? p.red : p.yellow
      const lines: Array<readonly [string, string]> = [["status", colour(status)]]
      if (Either.isRight(health)) {
        const h = health.right
        lines.push(
          ["node id", h.nodeId],
          ["version", h.version],
          ["uptime", Output.duration(h.uptimeSeconds)],
          [
            "plugins",
            `${h.plugins.total} (${h.plugins.running} running, ${h.plugins.failed} failed, ${h.plugins.quarantined} quarantined)`
          ]
        )
      } else {
        lines.push(["note", health.left.message])
      }
      yield* Output.line(`${p.bold("Blackhole node")} at ${target.baseUrl}`)
      yield* Output.line(Output.fields(lines.map(([label, value]) => [`  ${label}`, value] as const)))
      yield* Output.line("")
      yield* Output.line(pluginTable(plugins))
    }
    if (status !== "ok") return yield* CliError.failure("")
  })
).pipe(
  Command.withDescription("Show the running node's health and plugins (exit 1 unless its status is ok).")
)
