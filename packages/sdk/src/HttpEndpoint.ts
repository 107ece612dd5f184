/**
 * HTTP endpoints a plugin serves through the node (the original design's
 * RegisterServiceEndpoint / RegisterHTTPHandler). A plugin with `http:serve`
 * returns `http: HttpEndpoint.make("analytics", [HttpEndpoint.get("/", ...)])`
 * from its program; the node mounts the routes under `/api/v1/analytics` and
 * hands each matching request to the plugin, in process or in a subprocess
 * alike. Requests and responses are plain data so they cross the process
 * boundary unchanged.
 */
import type * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

/** The methods a route may answer. */
export const Method = Schema.Literal("GET", "POST", "PUT", "PATCH", "DELETE")
/** @see Method */
export type Method = typeof Method.Type

const StringRecord = Schema.Record({ key: Schema.String, value: Schema.String })

/** A request as the plugin sees it: `path` is relative to the plugin's mount point. */
export const Request = Schema.Struct({
  method: Method,
  /** Always starts with `/`; `/` is the mount point itself. */
  path: Schema.String,
  /** The values of the route's `:name` segments. */
  params: StringRecord,
  query: StringRecord,
  /** Lower-case header names. */
  headers: StringRecord,
  /** The body as text (empty when there is none). */
  body: Schema.String
})
/** @see Request */
export type Request = typeof Request.Type

/** A response: status, headers, and a text body. */
export const Response = Schema.Struct({
  status: Schema.Int.pipe(Schema.between(100, 599)),
  headers: Schema.optional(StringRecord),
  body: Schema.optional(Schema.String)
})
/** @see Response */
export type Response = typeof Response.Type

/** One route: a method, a path pattern relative to the mount point (`/`, `/stats/:type`), and its handler. */
export interface Route {
  readonly method: Method
  readonly path: string
  /** Handlers capture what they need from the program; a failure is the plugin's to turn into a response. */
  readonly handle: (request: Request) => Effect.Effect<Response>
}

/** What a plugin returns as `http`: where it is mounted and its routes. */
export interface Endpoints {
  /** The mount point under `/api/v1/`: one or more path segments, e.g. `analytics`. */
  readonly path: string
  readonly routes: ReadonlyArray<Route>
}

const segment = /^[A-Za-z0-9][A-Za-z0-9._~-]*$/

/** Why a mount path or route pattern is unusable, or undefined when it is fine. */
export const validatePath = (path: string, kind: "mount" | "route"): string | undefined => {
  const trimmed = kind === "mount" ? path : path.replace(/^\//, "")
  if (kind === "route" && !path.startsWith("/")) return `route path "${path}" must start with "/"`
  if (trimmed === "") return kind === "mount" ? "the mount path is empty" : undefined
  for (const part of trimmed.split("/")) {
    const literal = kind === "route" && part.startsWith(":") ? part.slice(1) : part
    if (!segment.test(literal)) return `"${path}" has an invalid segment "${part}"`
  }
  return undefined
}

/** Endpoints mounted at `/api/v1/<path>`. */
export const make = (path: string, routes: ReadonlyArray<Route>): Endpoints => ({ path, routes })

/** A route. */
export const route = (
  method: Method,
  path: string,
  handle: (request: Request) => Effect.Effect<Response>
): Route => ({ method, path, handle })

/** A GET route. */
export const get = (path: string, handle: (request: Request) => Effect.Effect<Response>): Route =>
  route("GET", path, handle)

/** A POST route. */
export const post = (path: string, handle: (request: Request) => Effect.Effect<Response>): Route =>
  route("POST", path, handle)

/** A JSON response. */
export const json = (body: unknown, status = 200): Response => ({
  status,
  headers: { "content-type": "application/json" },
  body: JSON.stringify(body)
})

/** A plain-text response. */
export const text = (body: string, status = 200): Response => ({
  status,
  headers: { "content-type": "text/plain; charset=utf-8" },
  body
})

/**
 * Matches a path against a route pattern; returns the `:name` parameters, or
 * undefined when it does not match. Both start with `/`; a trailing `/` is ignored.
 */
export const matchPath = (pattern: string, path: string): Record<string, string> | undefined => {
  const want = pattern.split("/").filter((part) => part !== "")
  const have = path.split("/").filter((part) => part !== "")
  if (want.length !== have.length) return undefined
  const params: Record<string, string> = {}
  for (let i = 0; i < want.length; i++) {
    const expected = want[i] as string
    const actual = have[i] as string
    if (expected.startsWith(":")) {
      try {
        params[expected.slice(1)] = decodeURIComponent(actual)
      } catch {
        return undefined
      }
    } else if (expected !== actual) return undefined
  }
  return params
}
