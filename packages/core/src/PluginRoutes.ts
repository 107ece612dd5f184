/**
 * The HTTP routes plugins serve, mounted under `/api/v1/<path>`. A plugin
 * whose program returns `http` endpoints is mounted while it runs, only with
 * the operator's `http:serve` grant; the node's HTTP server asks `resolve`
 * which plugin answers a request. In-process and subprocess plugins alike.
 */
import { PluginFailure } from "@blackhole/sdk/Errors"
import * as HttpEndpoint from "@blackhole/sdk/HttpEndpoint"
import * as Permission from "@blackhole/sdk/Permission"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type { Attachment } from "./PluginManager.js"

/** Where a request goes: the plugin, its route, and the path parameters. */
export interface Resolved {
  readonly pluginId: string
  readonly route: HttpEndpoint.Route
  /** The path below the mount point, starting with `/`. */
  readonly path: string
  readonly params: Record<string, string>
}

/** A mounted plugin, as listed. */
export interface Mount {
  readonly pluginId: string
  readonly path: string
  readonly routes: ReadonlyArray<{ readonly method: HttpEndpoint.Method; readonly path: string }>
}

/** The routes plugins serve. */
export class PluginRoutes extends Context.Tag("@blackhole/core/PluginRoutes")<
  PluginRoutes,
  {
    /** Mounts a plugin's endpoints for the life of the current Scope. */
    readonly mount: (
      pluginId: string,
      endpoints: HttpEndpoint.Endpoints
    ) => Effect.Effect<void, PluginFailure, Scope.Scope>
    /**
     * The route for a request path below `/api/v1/` (e.g. `analytics/stats`). `undefined` when no
     * plugin is mounted there; `{ allowed }` when one is but no route has this method.
     */
    readonly resolve: (
      method: string,
      path: string
    ) => Resolved | { readonly allowed: ReadonlyArray<HttpEndpoint.Method> } | undefined
    readonly list: Effect.Effect<ReadonlyArray<Mount>>
  }
>() {}

const segmentsOf = (path: string) => path.split("/").filter((part) => part !== "")

/** An empty route table. */
export const make = Effect.sync(() => {
  const mounts = new Map<string, { readonly pluginId: string; readonly endpoints: HttpEndpoint.Endpoints }>()
  return PluginRoutes.of({
    mount: (pluginId, endpoints) =>
      Effect.gen(function* () {
        const problems = [
          HttpEndpoint.validatePath(endpoints.path, "mount"),
          ...endpoints.routes.map((route) => HttpEndpoint.validatePath(route.path, "route"))
        ].filter((problem) => problem !== undefined)
        if (problems.length > 0) {
          return yield* new PluginFailure({
            pluginId,
            reason: `invalid HTTP endpoints: ${problems.join("; ")}`
          })
        }
        const key = segmentsOf(endpoints.path).join("/")
        const taken = [...mounts.entries()].find(([other]) => {
          const a = segmentsOf(other)
          const b = segmentsOf(key)
          // One mount may not shadow another: neither may be a prefix of the other.
          return a.slice(0, b.length).join("/") === b.slice(0, a.length).join("/")
        })
        if (taken !== undefined) {
          return yield* new PluginFailure({
            pluginId,
            reason: `HTTP path /api/v1/${key} overlaps /api/v1/${taken[0]}, served by ${taken[1].pluginId}`
          })
        }
        mounts.set(key, { pluginId, endpoints })
        yield* Effect.addFinalizer(() => Effect.sync(() => mounts.delete(key)))
      }),
    resolve: (method, path) => {
      const segments = segmentsOf(path)
      for (const [key, { pluginId, endpoints }] of mounts) {
        const prefix = segmentsOf(key)
        if (prefix.some((part, i) => segments[i] !== part)) continue
        const rest = `/${segments.slice(prefix.length).join("/")}`
        const allowed: Array<HttpEndpoint.Method> = []
        for (const route of endpoints.routes) {
          const params = HttpEndpoint.matchPath(route.path, rest)
          if (params === undefined) continue
          if (route.method === method) return { pluginId, route, path: rest, params }
          allowed.push(route.method)
        }
        return allowed.length > 0 ? { allowed } : undefined
      }
      return undefined
    },
    list: Effect.sync(() =>
      [...mounts.entries()].map(([path, { pluginId, endpoints }]) => ({
        pluginId,
        path,
        routes: endpoints.routes.map(({ method, path }) => ({ method, path }))
      }))
    )
  })
})

/** The route table as a Layer. */
export const layer: Layer.Layer<PluginRoutes> = Layer.effect(PluginRoutes, make)

/** Mounts a started plugin's HTTP endpoints, if it returned any and holds `http:serve`. */
export const attachment =
  (routes: PluginRoutes["Type"]): Attachment =>
  ({ manifest, granted, handlers }) =>
    Effect.gen(function* () {
      if (handlers.http === undefined) return
      if (!Permission.allows(granted, "http:serve")) {
        return yield* new PluginFailure({
          pluginId: manifest.id,
          reason:
            'it returned HTTP endpoints but holds no "http:serve" grant: request "http:serve" in plugin.json and grant it under plugins.grants in the node config'
        })
      }
      yield* routes.mount(manifest.id, handlers.http)
    })
