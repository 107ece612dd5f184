/**
 * The admin HTTP server: the AdminApi handlers, `/metrics`, the mesh over
 * HTTP, the event stream, and plugin routes under `/api/v1/`. Mutating
 * requests, service calls and the event stream need the bearer token when
 * `auth: token`. Built on HttpLayerRouter so typed and raw routes share one
 * router, one server and one auth check.
 */
import { createServer } from "node:http"
import * as nodePath from "node:path"
import * as EventBusModule from "@blackhole/core/EventBus"
import { EventBus } from "@blackhole/core/EventBus"
import { Identity } from "@blackhole/core/Identity"
import * as NodeMetricsModule from "@blackhole/core/NodeMetrics"
import { P2P } from "@blackhole/core/P2P"
import type { PluginInfo } from "@blackhole/core/PluginManager"
import { PluginManager, pluginDataDirectory, states } from "@blackhole/core/PluginManager"
import { PluginRoutes } from "@blackhole/core/PluginRoutes"
import * as Principal from "@blackhole/core/Principal"
import * as Profiling from "@blackhole/core/Profiling"
import * as Sandbox from "@blackhole/core/Sandbox"
import { ServiceRegistry } from "@blackhole/core/ServiceRegistry"
import * as EventPattern from "@blackhole/sdk/EventPattern"
import type * as HttpEndpoint from "@blackhole/sdk/HttpEndpoint"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as AdminApi from "./AdminApi.js"
import { NodePhase } from "./NodePhase.js"
import * as Prometheus from "./Prometheus.js"

/** What the server is configured with. */
export interface Options {
  readonly host: string
  readonly port: number
  /** The bearer token required on mutating endpoints, or undefined for `auth: none`. */
  readonly token: string | undefined
  /** How long start/stop/reload wait before answering 202 and finishing in the background. */
  readonly operationTimeoutMillis: number
  readonly version: string
  /** The node's data directory: plugin data and `profiles/` live under it. */
  readonly dataDir: string
  /** Whether CPU profiles may be taken (`plugins.development.debug_mode`). */
  readonly profiling: boolean
}

const summaryOf = (info: PluginInfo): AdminApi.PluginSummary => ({
  id: info.id,
  name: info.name,
  version: info.version,
  type: info.type,
  loader: info.loader,
  state: info.state,
  restarts: info.restarts,
  pid: info.pid,
  memoryBytes: info.memoryBytes,
  lastExit: info.lastExit
})

const notFound = (pluginId: string) =>
  new AdminApi.PluginNotFound({ pluginId, message: `no plugin "${pluginId}" is installed on this node` })

/** The status code of an encoded mesh error (DESIGN.md "Interfaces other code relies on"). */
export const statusOfError = (tag: string): number => {
  switch (tag) {
    case "InvalidPayload":
      return 400
    case "PermissionDenied":
    case "MissingGrants":
      return 403
    case "ServiceNotFound":
    case "MethodNotFound":
      return 404
    case "RateLimited":
    case "QuotaExceeded":
      return 429
    case "PluginUnavailable":
      return 503
    case "HookVetoed":
      return 409
    case "MethodError":
      return 422
    default:
      return 500
  }
}

/** An error as JSON: the encoded TaggedError, with its message (Schema.TaggedError's is a getter). */
const errorBody = (error: unknown): Record<string, unknown> => {
  if (Predicate.isRecord(error) && typeof error._tag === "string") {
    return { ...error, message: (error as { message?: unknown }).message ?? String(error._tag) }
  }
  return { _tag: "Defect", message: String(error) }
}

const HealthHandlers = HttpApiBuilder.group(AdminApi.AdminApi, "health", (handlers) =>
  Effect.gen(function* () {
    const manager = yield* PluginManager
    const identity = yield* Identity
    const phase = yield* NodePhase
    const startedAt = Date.now()
    const p2p = yield* Effect.serviceOption(P2P)
    return handlers
      .handle("health", () =>
        Effect.gen(function* () {
          const plugins = yield* manager.list
          const count = (state: string) => plugins.filter((p) => p.state === state).length
          const current = phase.get()
          if (current !== "running") {
            return yield* new AdminApi.NotReady({ status: current, message: `the node is ${current}` })
          }
          const failed = count("failed")
          const quarantined = count("quarantined")
          return {
            status: failed + quarantined > 0 ? ("degraded" as const) : ("ok" as const),
            nodeId: identity.nodeId,
            version: phase.version,
            uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
            plugins: { total: plugins.length, running: count("running"), failed, quarantined }
          }
        })
      )
      .handle("p2p", () =>
        Option.match(p2p, {
          onNone: () =>
            Effect.fail(
              new AdminApi.P2PDisabled({ message: "P2P is not enabled on this node (p2p.enabled)" })
            ),
          onSome: (node) =>
            Effect.all({
              peerId: Effect.succeed(node.peerId),
              listen: node.listenAddresses,
              peers: node.peers
            })
        })
      )
  })
)

const PluginsHandlers = (options: Options) =>
  HttpApiBuilder.group(AdminApi.AdminApi, "plugins", (handlers) =>
    Effect.gen(function* () {
      const manager = yield* PluginManager
      const routes = yield* PluginRoutes
      const registry = yield* ServiceRegistry
      // Operations that outlive their request finish here, not in the request's fiber.
      const background = yield* Effect.scope
      const info = (id: string) => manager.get(id).pipe(Effect.mapError(() => notFound(id)))

      const operate = (id: string, operation: "start" | "stop" | "reload") =>
        Effect.gen(function* () {
          yield* info(id)
          const run =
            operation === "start"
              ? manager.start(id)
              : operation === "stop"
                ? manager.stop(id)
                : manager.restart(id, { drainMillis: 1000 })
          const fiber = yield* Effect.forkIn(Effect.either(run), background)
          const outcome = yield* Fiber.join(fiber).pipe(
            Effect.timeoutOption(Duration.millis(options.operationTimeoutMillis))
          )
          const now = yield* info(id)
          const result: AdminApi.OperationResult = {
            id,
            operation,
            state: now.state,
            done: Option.isSome(outcome),
            error:
              Option.isSome(outcome) && outcome.value._tag === "Left"
                ? ((outcome.value.left as { message?: string }).message ?? String(outcome.value.left))
                : now.error
          }
          return HttpServerResponse.unsafeJson(result, { status: result.done ? 200 : 202 })
        })

      return handlers
        .handle("list", () => Effect.map(manager.list, (plugins) => plugins.map(summaryOf)))
        .handle("get", ({ path }) =>
          Effect.gen(function* () {
            const plugin = yield* info(path.id)
            const services = (yield* registry.list)
              .filter((registration) => registration.owner === path.id)
              .map((registration) => registration.name)
            const mounted = (yield* routes.list)
              .filter((mount) => mount.pluginId === path.id)
              .flatMap((mount) =>
                mount.routes.map((r) => `${r.method} /api/v1/${mount.path}${r.path === "/" ? "" : r.path}`)
              )
            return {
              ...summaryOf(plugin),
              error: plugin.error,
              granted: plugin.granted,
              dependencies: plugin.dependencies,
              services,
              routes: mounted,
              health: yield* manager.health(path.id).pipe(Effect.orElseSucceed(() => null))
            }
          })
        )
        .handleRaw("start", ({ path }) => operate(path.id, "start"))
        .handleRaw("stop", ({ path }) => operate(path.id, "stop"))
        .handleRaw("reload", ({ path }) => operate(path.id, "reload"))
        .handle("sync", ({ path }) =>
          Effect.gen(function* () {
            const plugin = yield* info(path.id)
            const handlers = yield* manager.handlers(path.id).pipe(Effect.orElseSucceed(() => undefined))
            if (handlers?.integration === undefined) {
              return yield* new AdminApi.ApiError({
                message:
                  plugin.state === "running"
                    ? `${path.id} is not an integration plugin: it has no sync`
                    : `${path.id} is ${plugin.state}; start it first`
              })
            }
            yield* handlers.integration.sync
            return { id: path.id, synced: true }
          })
        )
        .handle("logLevel", ({ path, payload }) =>
          info(path.id).pipe(
            Effect.zipRight(Sandbox.setLogLevel(path.id, payload.level)),
            Effect.zipRight(Effect.logInfo(`log level of ${path.id} set to ${payload.level}`)),
            Effect.as({ id: path.id, level: payload.level })
          )
        )
        .handle("profile", ({ path, payload }) =>
          Effect.gen(function* () {
            yield* info(path.id)
            if (!options.profiling) {
              return yield* new AdminApi.ApiError({
                message:
                  "profiling is a debug-mode feature: set plugins.development.debug_mode (or start with --dev)"
              })
            }
            const file = yield* Profiling.profile({
              manager,
              pluginId: path.id,
              seconds: payload.seconds,
              dataDirectory: pluginDataDirectory(options.dataDir, path.id),
              profilesDir: nodePath.join(options.dataDir, "profiles")
            }).pipe(Effect.mapError((error) => new AdminApi.ApiError({ message: error.message })))
            return { id: path.id, file }
          })
        )
    })
  )

/** Gauges sampled at scrape time from the plugin manager. */
const pluginSamples = (plugins: ReadonlyArray<PluginInfo>): ReadonlyArray<Prometheus.Sample> =>
  plugins.flatMap((plugin) => [
    ...states.map((state) => ({
      name: "plugin_state",
      help: "1 for the state each plugin is in, 0 for the others",
      type: "gauge" as const,
      labels: { plugin: plugin.id, state },
      value: plugin.state === state ? 1 : 0
    })),
    ...(plugin.memoryBytes === null
      ? []
      : [
          {
            name: "plugin_memory_bytes",
            help: "Resident memory of each subprocess plugin, sampled",
            type: "gauge" as const,
            labels: { plugin: plugin.id },
            value: plugin.memoryBytes
          }
        ])
  ])

const metricsRoute = HttpLayerRouter.add(
  "GET",
  "/metrics",
  Effect.gen(function* () {
    const manager = yield* PluginManager
    const plugins = yield* manager.list
    // Make sure every family is present even before its first update.
    yield* Effect.all([
      Metric.update(NodeMetricsModule.pluginRestarts, 0),
      Metric.update(NodeMetricsModule.pluginOperations, 0),
      Metric.update(EventBusModule.droppedTotal, 0)
    ])
    const snapshot = yield* Metric.snapshot
    return HttpServerResponse.text(Prometheus.render(snapshot, pluginSamples(plugins)), {
      contentType: "text/plain; version=0.0.4; charset=utf-8"
    })
  })
)

const JsonBody = Schema.parseJson()

const serviceRoute = HttpLayerRouter.add(
  "POST",
  "/api/services/:name/:method",
  Effect.gen(function* () {
    const registry = yield* ServiceRegistry
    const params = yield* HttpRouter.params
    const request = yield* HttpServerRequest.HttpServerRequest
    const text = yield* Effect.orElseSucceed(request.text, () => "")
    const payload =
      text.trim() === "" ? undefined : yield* Effect.either(Schema.decodeUnknown(JsonBody)(text))
    if (payload !== undefined && payload._tag === "Left") {
      return HttpServerResponse.unsafeJson(
        { _tag: "InvalidPayload", message: `the request body is not JSON: ${payload.left.message}` },
        { status: 400 }
      )
    }
    const result = yield* Effect.either(
      registry.call(Principal.operator, params.name ?? "", params.method ?? "", payload?.right)
    )
    if (result._tag === "Right") return HttpServerResponse.unsafeJson(result.right ?? null)
    const body = errorBody(result.left)
    return HttpServerResponse.unsafeJson(body, { status: statusOfError(String(body._tag)) })
  })
)

const eventsRoute = HttpLayerRouter.add(
  "GET",
  "/api/events",
  Effect.gen(function* () {
    const bus = yield* EventBus
    const request = yield* HttpServerRequest.HttpServerRequest
    const url = new URL(request.url, "http://admin")
    const pattern = url.searchParams.get("pattern") ?? "*"
    const invalid = EventPattern.validate(pattern)
    if (invalid !== undefined) {
      return HttpServerResponse.unsafeJson(
        { _tag: "InvalidPattern", message: `pattern "${pattern}": ${invalid}` },
        { status: 400 }
      )
    }
    // The subscription lives exactly as long as the response stream.
    const encoder = new TextEncoder()
    const events = Stream.unwrapScoped(
      Effect.map(bus.subscribe(pattern, { subscriber: "admin-api" }), (subscription) => subscription.stream)
    ).pipe(
      Stream.map((event) =>
        encoder.encode(`id: ${event.id}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`)
      )
    )
    const heartbeat = Stream.tick(Duration.seconds(15)).pipe(
      Stream.map(() => encoder.encode(": keep-alive\n\n"))
    )
    return HttpServerResponse.stream(
      Stream.merge(Stream.make(encoder.encode(": subscribed\n\n")), Stream.merge(events, heartbeat)),
      {
        contentType: "text/event-stream",
        headers: { "cache-control": "no-cache", connection: "keep-alive" }
      }
    )
  })
)

const pluginRoute = HttpLayerRouter.add(
  "*",
  "/api/v1/*",
  Effect.gen(function* () {
    const routes = yield* PluginRoutes
    const request = yield* HttpServerRequest.HttpServerRequest
    const url = new URL(request.url, "http://admin")
    const below = url.pathname.replace(/^\/api\/v1\/?/, "")
    const resolved = routes.resolve(request.method, below)
    if (resolved === undefined) {
      return HttpServerResponse.unsafeJson(
        { _tag: "RouteNotFound", message: `no plugin serves ${url.pathname}` },
        { status: 404 }
      )
    }
    if ("allowed" in resolved) {
      return HttpServerResponse.unsafeJson(
        {
          _tag: "MethodNotAllowed",
          message: `${request.method} is not served here; try ${resolved.allowed.join(", ")}`
        },
        { status: 405, headers: { allow: resolved.allowed.join(", ") } }
      )
    }
    const body = yield* Effect.orElseSucceed(request.text, () => "")
    const headers: Record<string, string> = {}
    for (const [key, value] of Object.entries(request.headers)) {
      // The admin token is the node's, not the plugin's business.
      if (key !== "authorization") headers[key] = String(value)
    }
    const response = yield* resolved.route.handle({
      method: resolved.route.method,
      path: resolved.path,
      params: resolved.params,
      query: Object.fromEntries(url.searchParams.entries()),
      headers,
      body
    } satisfies HttpEndpoint.Request)
    return HttpServerResponse.text(response.body ?? "", {
      status: response.status,
      headers: response.headers ?? {},
      contentType: response.headers?.["content-type"] ?? "text/plain; charset=utf-8"
    })
  }).pipe(Effect.annotateLogs({ route: "plugin" }))
)

/** Whether a request needs the token: anything that changes state, calls the mesh, or streams events. */
const needsToken = (method: string, pathname: string) =>
  (method !== "GET" && method !== "HEAD") || pathname === "/api/events"

const authMiddleware = (token: string) =>
  HttpLayerRouter.middleware(
    (effect) =>
      Effect.gen(function* () {
        const request = yield* HttpServerRequest.HttpServerRequest
        const pathname = new URL(request.url, "http://admin").pathname
        if (!needsToken(request.method, pathname)) return yield* effect
        const given = request.headers.authorization ?? ""
        if (given === `Bearer ${token}`) return yield* effect
        yield* Effect.logWarning(
          `refused ${request.method} ${pathname} from ${Option.getOrElse(request.remoteAddress, () => "?")}: ${given === "" ? "no bearer token" : "wrong bearer token"}`
        )
        return HttpServerResponse.unsafeJson(
          {
            _tag: "Unauthorized",
            message:
              "this endpoint needs `Authorization: Bearer <token>`; the token is in <data dir>/admin.token"
          },
          { status: 401, headers: { "www-authenticate": 'Bearer realm="blackhole"' } }
        )
      }),
    { global: true }
  )

/** The admin server as a Layer: listening while the Layer lives, closed (and drained) when it ends. */
export const layer = (options: Options) => {
  const api = HttpLayerRouter.addHttpApi(AdminApi.AdminApi).pipe(
    Layer.provide([HealthHandlers, PluginsHandlers(options)])
  )
  const routes = Layer.mergeAll(api, metricsRoute, serviceRoute, eventsRoute, pluginRoute)
  const withAuth = options.token === undefined ? routes : Layer.merge(routes, authMiddleware(options.token))
  return HttpLayerRouter.serve(withAuth, { disableListenLog: true, disableLogger: true }).pipe(
    Layer.provideMerge(NodeHttpServer.layer(createServer, { host: options.host, port: options.port }))
  )
}
