/**
 * `blackhole call <service> <method> [json]`: calls a mesh service method
 * through the node's HTTP API as the operator, and prints its JSON result.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as AdminApi from "../AdminApi.js"
import * as AdminClient from "./AdminClient.js"
import * as CliError from "./CliError.js"
import * as Flags from "./Flags.js"
import * as Output from "./Output.js"

const parseJson = (
  text: string
): { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly reason: string } => {
  try {
    return { ok: true, value: JSON.parse(text) }
  } catch (error) {
    return { ok: false, reason: error instanceof Error ? error.message : String(error) }
  }
}

/** `blackhole call [--json] <service> <method> [json]` */
export const command = Command.make(
  "call",
  {
    ...Flags.remoteOptions,
    json: Flags.json,
    service: Args.text({ name: "service" }).pipe(Args.withDescription("The mesh service, e.g. greeter.")),
    method: Args.text({ name: "method" }).pipe(Args.withDescription("The method, e.g. greet.")),
    payload: Args.text({ name: "json" }).pipe(
      Args.withDescription(`The payload as JSON, e.g. '{"name":"Ada"}' (none when omitted).`),
      Args.optional
    )
  },
  (own) =>
    Effect.gen(function* () {
      const flags = yield* Flags.inherit(own)
      // Checked before anything else: a malformed payload is a usage error, whatever the node's state.
      if (Option.isSome(flags.payload)) {
        const parsed = parseJson(flags.payload.value)
        if (!parsed.ok) {
          return yield* CliError.usage(
            `the payload is not JSON (${parsed.reason}); quote it for the shell, e.g. '{"name":"Ada"}'`
          )
        }
      }
      const target = yield* AdminClient.target(flags)
      const response = yield* AdminClient.callService(
        target,
        flags.service,
        flags.method,
        Option.getOrUndefined(flags.payload)
      )
      const body = parseJson(response.text)
      if (response.status >= 200 && response.status < 300) {
        if (flags.json || !body.ok) return yield* Output.line(response.text.trim())
        return yield* Output.json(body.value)
      }
      if (flags.json) yield* Output.line(response.text.trim())
      const error = body.ok && Predicate.isRecord(body.value) ? body.value : undefined
      if (response.status === 401) {
        return yield* AdminClient.explain(target)(
          new AdminApi.Unauthorized({ message: String(error?.message ?? "unauthorized") })
        )
      }
      return yield* CliError.failure(
        error !== undefined && typeof error._tag === "string"
          ? `${error._tag}: ${typeof error.message === "string" ? error.message : JSON.stringify(error)}`
          : `HTTP ${response.status}: ${response.text.trim().slice(0, 300)}`
      )
    })
).pipe(Command.withDescription("Call a mesh service method as the operator and print its JSON result."))
