/**
 * The CLI's side of the admin HTTP API: where the node is (`--url`, else the
 * effective config's `http.host:http.port`), the bearer token from
 * `<data dir>/admin.token`, a typed client of `AdminApi`, a raw request for
 * the mesh route, and what each way of failing means for the operator (and
 * for the exit code: 3 when the node does not answer).
 */
import * as fs from "node:fs"
import * as nodePath from "node:path"
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { identity } from "effect/Function"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import * as AdminApi from "../AdminApi.js"
import type * as Config from "../Config.js"
import * as CliError from "./CliError.js"
import * as Flags from "./Flags.js"

/** Where the node is and how to authenticate to it. */
export interface Target {
  readonly baseUrl: string
  /** The bearer token, when `<data dir>/admin.token` exists and is readable. */
  readonly token: string | undefined
  readonly tokenFile: string
}

/** How long any one request may take before the node counts as unreachable. */
export const timeout = Duration.seconds(60)

/** The URL a client on this machine reaches `http.host:http.port` at (a wildcard host means loopback). */
export const defaultUrl = (config: Config.Config): string => {
  const host = config.http.host
  const reachable =
    host === "" || host === "0.0.0.0"
      ? "127.0.0.1"
      : host === "::" || host === "[::]"
        ? "[::1]"
        : host.includes(":") && !host.startsWith("[")
          ? `[${host}]`
          : host
  return `http://${reachable}:${config.http.port}`
}

/** The admin token in `dataDir`, if there is one this user may read. */
export const readToken = (tokenFile: string): string | undefined => {
  try {
    const token = fs.readFileSync(tokenFile, "utf8").trim()
    return token === "" ? undefined : token
  } catch {
    return undefined
  }
}

/** The parsed options of a command that talks to the node. */
export interface RemoteFlags extends Partial<Flags.NodeFlags> {
  readonly url: Option.Option<string>
}

/** Resolves `--url` / the config into a target. */
export const target = (flags: RemoteFlags): Effect.Effect<Target, CliError.CliError> =>
  Effect.map(Flags.loadConfig(flags), (config) => {
    const tokenFile = nodePath.join(config.node.dataDir, "admin.token")
    return {
      baseUrl: Option.getOrElse(flags.url, () => defaultUrl(config)).replace(/\/+$/, ""),
      token: readToken(tokenFile),
      tokenFile
    }
  })

const authorized = (target: Target) =>
  target.token === undefined
    ? identity<HttpClient.HttpClient>
    : HttpClient.mapRequest(HttpClientRequest.bearerToken(target.token))

/** The innermost reason of a network failure (`ECONNREFUSED`, `ENOTFOUND` …). */
const networkReason = (error: unknown): string => {
  let current: unknown = error
  let message = "no answer"
  for (let depth = 0; depth < 6 && Predicate.isRecord(current); depth++) {
    if (typeof current.code === "string") return current.code
    if (typeof current.message === "string" && current.message !== "") message = current.message
    current = current.cause
  }
  return message
}

const unreachable = (target: Target, reason: string) =>
  CliError.unreachable(
    `cannot reach the node at ${target.baseUrl} (${reason}).\n` +
      "Is it running? Start it with `blackhole start`, or point --url (or --config) at the node."
  )

const bodySnippet = (response: { readonly text: Effect.Effect<string, unknown> }) =>
  response.text.pipe(
    Effect.map((text) => (text.trim() === "" ? "" : `: ${text.trim().slice(0, 300)}`)),
    Effect.orElseSucceed(() => "")
  )

/** What a failed request means for the operator, as the command's failure. */
export const explain =
  (target: Target) =>
  (error: unknown): Effect.Effect<never, CliError.CliError> => {
    if (error instanceof CliError.CliError) return Effect.fail(error)
    if (Cause.isTimeoutException(error)) {
      return Effect.fail(unreachable(target, `no answer within ${Duration.format(timeout)}`))
    }
    if (HttpClientError.isHttpClientError(error)) {
      if (error._tag === "RequestError") {
        return Effect.fail(
          error.reason === "Transport"
            ? unreachable(target, networkReason(error.cause))
            : CliError.failure(error.message)
        )
      }
      return Effect.flatMap(bodySnippet(error.response), (body) =>
        Effect.fail(
          CliError.failure(
            `unexpected answer to ${error.request.method} ${error.request.url}: HTTP ${error.response.status}${body}`
          )
        )
      )
    }
    if (ParseResult.isParseError(error)) {
      const problems = ParseResult.ArrayFormatter.formatErrorSync(error)
        .map((issue) => `  ${issue.path.length === 0 ? "(root)" : issue.path.join(".")}: ${issue.message}`)
        .join("\n")
      return Effect.fail(
        CliError.failure(
          `the node at ${target.baseUrl} answered in a shape this CLI does not know (a different version?):\n${problems}`
        )
      )
    }
    if (error instanceof AdminApi.Unauthorized) {
      return Effect.fail(
        CliError.failure(
          `Unauthorized: the node requires its admin token, and ${
            target.token === undefined
              ? `there is none at ${target.tokenFile}`
              : `the one in ${target.tokenFile} was refused`
          }.\nPass the running node's --data-dir (or --config), or run this as a user who may read its admin.token.`
        )
      )
    }
    if (Predicate.isRecord(error) && typeof error._tag === "string" && typeof error.message === "string") {
      return Effect.fail(CliError.failure(`${error._tag}: ${error.message}`))
    }
    return Effect.fail(CliError.failure(String(error)))
  }

const makeClient = (target: Target) =>
  HttpApiClient.make(AdminApi.AdminApi, { baseUrl: target.baseUrl, transformClient: authorized(target) })

/** The typed admin API client (its requests carry the token). */
export type Client = Effect.Effect.Success<ReturnType<typeof makeClient>>

/**
 * Runs `f` with a typed client of the node's admin API; every failure is
 * explained (exit 3 when the node does not answer, else 1), except those
 * `f` handles itself.
 */
export const withClient = <A, E>(
  target: Target,
  f: (client: Client) => Effect.Effect<A, E>
): Effect.Effect<A, CliError.CliError> =>
  makeClient(target).pipe(
    Effect.flatMap(f),
    Effect.timeout(timeout),
    Effect.catchAll(explain(target)),
    Effect.provide(FetchHttpClient.layer)
  )

/** A raw answer: status and body text. */
export interface RawResponse {
  readonly status: number
  readonly text: string
}

/** `POST /api/services/:name/:method` with a JSON body (none when `body` is undefined). */
export const callService = (
  target: Target,
  service: string,
  method: string,
  body: string | undefined
): Effect.Effect<RawResponse, CliError.CliError> =>
  Effect.gen(function* () {
    const client = authorized(target)(yield* HttpClient.HttpClient)
    const url = `${target.baseUrl}/api/services/${encodeURIComponent(service)}/${encodeURIComponent(method)}`
    const request = HttpClientRequest.post(url).pipe(
      HttpClientRequest.acceptJson,
      body === undefined ? identity : HttpClientRequest.bodyText(body, "application/json")
    )
    const response = yield* client.execute(request)
    const text = yield* response.text
    return { status: response.status, text }
  }).pipe(
    Effect.scoped,
    Effect.timeout(timeout),
    Effect.catchAll(explain(target)),
    Effect.provide(FetchHttpClient.layer)
  )

/**
 * A start/stop/reload answer. The node answers 202 (still in progress) with
 * the same body as 200; the typed client only knows 200, so 202 is decoded here.
 */
export const operation = (
  client: Client,
  name: "start" | "stop" | "reload",
  id: string
): Effect.Effect<AdminApi.OperationResult, unknown> =>
  client.plugins[name]({ path: { id } }).pipe(
    Effect.catchIf(
      (error): error is HttpClientError.ResponseError =>
        HttpClientError.isHttpClientError(error) &&
        error._tag === "ResponseError" &&
        error.response.status === 202,
      (error) => Effect.flatMap(error.response.json, Schema.decodeUnknown(AdminApi.OperationResult))
    )
  )
