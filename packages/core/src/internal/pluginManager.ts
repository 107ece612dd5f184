import * as fs from "node:fs"
import * as CoreServices from "@blackhole/sdk/CoreServices"
import {
  DependencyError,
  IncompatiblePlugin,
  MissingGrants,
  PluginFailure,
  PluginNotFound
} from "@blackhole/sdk/Errors"
import * as Permission from "@blackhole/sdk/Permission"
import type * as Plugin from "@blackhole/sdk/Plugin"
import * as PluginConfig from "@blackhole/sdk/PluginConfig"
import * as PluginManifest from "@blackhole/sdk/PluginManifest"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as MetricLabel from "effect/MetricLabel"
import * as Scope from "effect/Scope"
import * as semver from "semver"
import { EventBus } from "../EventBus.js"
import { HookRegistry } from "../HookRegistry.js"
import * as NodeMetrics from "../NodeMetrics.js"
import * as PluginLoader from "../PluginLoader.js"
import type {
  LastExit,
  Options,
  PluginInfo,
  PluginState,
  RegisterOptions,
  RestartPolicy,
  StartError
} from "../PluginManager.js"
import { PluginManager, pluginDataDirectory } from "../PluginManager.js"
import { type Quota, ResourceLimiter } from "../ResourceLimiter.js"
import * as Sandbox from "../Sandbox.js"
import { ServiceRegistry } from "../ServiceRegistry.js"
import { Storage } from "../Storage.js"

interface Entry {
  readonly manifest: PluginManifest.PluginManifest
  readonly loader: PluginLoader.PluginLoader
  readonly rawConfig: unknown
  /** Whether startAll starts it (an operator may keep a plugin registered but off). */
  readonly autoStart: boolean
  /** Serialises lifecycle operations on this plugin. */
  readonly lock: Effect.Semaphore
  readonly restart: Required<RestartPolicy>
  state: PluginState
  restarts: number
  /** Times of the restarts within the crash-loop window. */
  recentRestarts: Array<number>
  error: string | null
  lastExit: LastExit | null
  granted: ReadonlyArray<string>
  running: Running | undefined
  /** Holds the manifest's service names on the mesh while the plugin is registered. */
  readonly declarations: Scope.CloseableScope
}

interface Running {
  readonly scope: Scope.CloseableScope
  readonly loaded: PluginLoader.LoadedPlugin
  readonly quota: Quota
}

const defaultRestart: Required<RestartPolicy> = {
  policy: "on-failure",
  initialDelayMillis: 250,
  maxDelayMillis: 30_000,
  maxRestarts: 5,
  windowMillis: 60_000
}

const countRestart = (plugin: string) =>
  NodeMetrics.pluginRestarts.unsafeUpdate(1, [MetricLabel.make("plugin", plugin)])

const messageOf = (error: unknown): string =>
  error instanceof Error ? error.message : typeof error === "string" ? error : JSON.stringify(error)

export const layer = (options: Options) =>
  Layer.scoped(
    PluginManager,
    Effect.gen(function* () {
      const bus = yield* EventBus
      const limiter = yield* ResourceLimiter
      const registry = yield* ServiceRegistry
      // The sandbox needs these; capture them once so lifecycle methods have no requirements.
      const sandboxContext = yield* Effect.context<EventBus | Storage | ServiceRegistry | HookRegistry>()
      yield* Storage
      yield* HookRegistry
      const entries = new Map<string, Entry>()
      const managerScope = yield* Effect.scope
      const { nodeInfo } = options
      const grants = options.grants ?? {}

      // Each plugin's own data directory, created before it starts (a subprocess loader creates it too).
      const pluginNodeInfo = (id: string) =>
        options.dataDir === undefined
          ? Effect.succeed(nodeInfo)
          : Effect.try({
              try: () => {
                const dataDirectory = pluginDataDirectory(options.dataDir!, id)
                fs.mkdirSync(dataDirectory, { recursive: true, mode: 0o700 })
                return { ...nodeInfo, dataDirectory }
              },
              catch: (error) =>
                new PluginFailure({
                  pluginId: id,
                  reason: `cannot create its data directory: ${String(error)}`
                })
            })

      const lookup = (id: string) =>
        Effect.suspend(() => {
          const entry = entries.get(id)
          return entry === undefined
            ? Effect.fail(new PluginNotFound({ pluginId: id }))
            : Effect.succeed(entry)
        })

      const transition = (entry: Entry, state: PluginState, reason?: string) =>
        Effect.suspend(() => {
          entry.state = state
          const trouble = state === "failed" || state === "quarantined"
          if (trouble && reason !== undefined) entry.error = reason
          return bus
            .publish({
              type: `plugin.${state}`,
              source: "core",
              data: { id: entry.manifest.id, state, ...(reason === undefined ? {} : { reason }) }
            })
            .pipe(
              Effect.zipRight(
                trouble
                  ? Effect.logWarning(`plugin ${entry.manifest.id} ${state}: ${reason ?? "unknown reason"}`)
                  : Effect.logDebug(`plugin ${entry.manifest.id} ${state}`)
              ),
              Effect.annotateLogs({ plugin: entry.manifest.id })
            )
        })

      const registerWith = (
        manifest: PluginManifest.PluginManifest,
        loader: PluginLoader.PluginLoader,
        opts?: RegisterOptions
      ) =>
        Effect.gen(function* () {
          const existing = entries.get(manifest.id)
          if (existing !== undefined) {
            return yield* new DependencyError({
              pluginId: manifest.id,
              reason: `a plugin with this id is already registered (${existing.state}); unregister it first`
            })
          }
          const entry: Entry = {
            manifest,
            loader,
            rawConfig: opts?.config,
            autoStart: opts?.autoStart ?? true,
            lock: yield* Effect.makeSemaphore(1),
            restart: { ...defaultRestart, ...options.restart, ...opts?.restart },
            state: "registered",
            restarts: 0,
            recentRestarts: [],
            error: null,
            lastExit: null,
            granted: [],
            running: undefined,
            declarations: yield* Scope.fork(managerScope, ExecutionStrategy.sequential)
          }
          entries.set(manifest.id, entry)
          for (const name of manifest.services) {
            yield* registry
              .declare(name, manifest.id, () => entry.state)
              .pipe(Scope.extend(entry.declarations))
          }
          yield* transition(entry, "registered")
        })

      const register = (definition: Plugin.Any, opts?: RegisterOptions) =>
        Effect.gen(function* () {
          const manifest = yield* PluginManifest.decode(
            definition.manifest,
            `compiled-in plugin ${String(definition.manifest.id)}`
          )
          if (manifest.type !== definition.type) {
            return yield* new DependencyError({
              pluginId: manifest.id,
              reason: `manifest type "${manifest.type}" does not match the definition (Plugin.${definition.type})`
            })
          }
          const loader = PluginLoader.compiledIn(definition, (raw) =>
            PluginConfig.decode(definition.config, raw, manifest.id)
          )
          yield* registerWith(manifest, loader, opts)
        })

      /** Checks that must pass before any plugin code runs. */
      const preflight = (entry: Entry) =>
        Effect.gen(function* () {
          const { manifest } = entry
          const compatibility = manifest.compatibility
          if (compatibility !== undefined && !PluginManifest.isCompatible(manifest, nodeInfo.version)) {
            return yield* new IncompatiblePlugin({
              pluginId: manifest.id,
              nodeVersion: nodeInfo.version,
              minVersion: compatibility.minVersion,
              maxVersion: compatibility.maxVersion
            })
          }
          const resolution = Permission.resolve(
            manifest.permissions,
            grants[manifest.id] ?? [],
            CoreServices.coreMethodAccess
          )
          if (resolution.missing.length > 0) {
            return yield* new MissingGrants({ pluginId: manifest.id, missing: resolution.missing })
          }
          for (const [dependency, range] of Object.entries(manifest.dependencies)) {
            const other = entries.get(dependency)
            if (other === undefined) {
              return yield* new DependencyError({
                pluginId: manifest.id,
                reason: `depends on ${dependency} (${range}), which is not installed`
              })
            }
            if (!semver.satisfies(other.manifest.version, range)) {
              return yield* new DependencyError({
                pluginId: manifest.id,
                reason: `depends on ${dependency} ${range}, but ${other.manifest.version} is installed`
              })
            }
            if (other.state !== "running") {
              return yield* new DependencyError({
                pluginId: manifest.id,
                reason: `depends on ${dependency}, which is ${other.state}`
              })
            }
          }
          const config = yield* entry.loader.decodeConfig(entry.rawConfig)
          return { granted: resolution.granted, config }
        })

      const startEntry = (entry: Entry): Effect.Effect<void, StartError> =>
        Effect.gen(function* () {
          if (entry.running !== undefined) return
          const { manifest } = entry
          yield* transition(entry, "starting")
          const started = yield* Effect.gen(function* () {
            const { granted, config } = yield* preflight(entry)
            entry.granted = granted
            const quota = yield* limiter.make(manifest.id, PluginManifest.resourceLimits(manifest))
            const context = yield* Sandbox.make({
              pluginId: manifest.id,
              granted,
              quota,
              config,
              nodeInfo: yield* pluginNodeInfo(manifest.id)
            }).pipe(Effect.provide(sandboxContext))
            const scope = yield* Scope.make()
            const loaded = yield* Effect.gen(function* () {
              const loaded = yield* entry.loader.load({ manifest, context, granted })
              for (const served of loaded.services) {
                if (!manifest.services.includes(served.contract.name)) {
                  return yield* new PluginFailure({
                    pluginId: manifest.id,
                    reason: `serves "${served.contract.name}", which its manifest does not declare under "services"`
                  })
                }
                const direct = served.direct === undefined ? undefined : quota.inboundDirect(served.direct)
                yield* registry.register(
                  served.contract,
                  (method, payload) => quota.inbound(Effect.suspend(() => served.dispatch(method, payload))),
                  manifest.id,
                  direct === undefined ? { selfTimed: served.selfTimed === true } : { direct }
                )
              }
              for (const attach of options.attachments ?? []) {
                yield* attach({ manifest, granted, handlers: loaded.handlers })
              }
              return loaded
            }).pipe(
              Scope.extend(scope),
              Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause)))
            )
            return { scope, loaded, quota }
          }).pipe(
            Effect.tapError((error) => transition(entry, "failed", messageOf(error))),
            Effect.onInterrupt(() => transition(entry, "failed", "start was interrupted"))
          )
          entry.running = started
          entry.error = null
          yield* transition(entry, "running")
          if (started.loaded.exit !== undefined) yield* supervise(entry, started, started.loaded.exit)
        }).pipe(Effect.withSpan("PluginManager.start", { attributes: { plugin: entry.manifest.id } }))

      /** Watches a supervised plugin's process; when it ends on its own, apply the restart policy. */
      const supervise = (entry: Entry, started: Running, exit: Effect.Effect<LastExit>) =>
        exit.pipe(
          Effect.flatMap((lastExit) =>
            entry.lock.withPermits(1)(
              Effect.gen(function* () {
                // A stop or restart under way owns this exit.
                if (entry.running !== started) return
                entry.running = undefined
                entry.lastExit = lastExit
                yield* Scope.close(started.scope, Exit.void)
                const why = `process ended: ${lastExit.reason}${lastExit.code === null ? "" : ` (code ${lastExit.code})`}${lastExit.signal === null ? "" : ` (${lastExit.signal})`}`
                yield* afterFailure(entry, why, lastExit.reason === "clean")
              })
            )
          ),
          Effect.forkIn(managerScope),
          Effect.asVoid
        )

      /** The restart policy: back off and start again, or give up as failed, or quarantine a crash loop. */
      const afterFailure = (entry: Entry, why: string, clean: boolean): Effect.Effect<void> =>
        Effect.gen(function* () {
          const policy = entry.restart
          if (policy.policy === "never" || (policy.policy === "on-failure" && clean)) {
            yield* transition(entry, clean ? "stopped" : "failed", why)
            return
          }
          const now = Date.now()
          entry.recentRestarts = entry.recentRestarts.filter((at) => now - at < policy.windowMillis)
          if (entry.recentRestarts.length >= policy.maxRestarts) {
            yield* transition(
              entry,
              "quarantined",
              `${why}; ${entry.recentRestarts.length} restarts within ${policy.windowMillis} ms: quarantined until started by the operator`
            )
            return
          }
          entry.recentRestarts.push(now)
          const exponent = entry.recentRestarts.length - 1
          const ceiling = Math.min(policy.maxDelayMillis, policy.initialDelayMillis * 2 ** exponent)
          // Full jitter in the upper half: restarts of many plugins do not align.
          const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2)
          yield* transition(entry, "restarting", `${why}; restarting in ${delay} ms`)
          yield* Effect.sleep(Duration.millis(delay)).pipe(
            Effect.zipRight(
              entry.lock.withPermits(1)(
                Effect.suspend(() => {
                  // Stopped (or started) by someone else while we waited.
                  if (entry.state !== "restarting") return Effect.void
                  entry.restarts += 1
                  countRestart(entry.manifest.id)
                  return startEntry(entry).pipe(
                    Effect.catchAll((error) => afterFailure(entry, messageOf(error), false))
                  )
                })
              )
            ),
            Effect.forkIn(managerScope)
          )
        })

      const stopEntry = (entry: Entry) =>
        Effect.gen(function* () {
          const running = entry.running
          if (running === undefined) {
            // A pending restart or a quarantine ends with an explicit stop.
            if (entry.state === "starting" || entry.state === "restarting" || entry.state === "quarantined") {
              yield* transition(entry, "stopped")
            }
            return
          }
          yield* transition(entry, "stopping")
          entry.running = undefined
          // Closing the Scope runs the plugin's finalizers and interrupts every fiber it forked.
          const exit = yield* Effect.exit(Scope.close(running.scope, Exit.void))
          // The process is gone once its Scope has closed: record how it ended.
          if (running.loaded.exit !== undefined) entry.lastExit = yield* running.loaded.exit
          // Interruptions of the plugin's own fibers are how a stop works, not a failure of it.
          if (Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause)) {
            yield* transition(entry, "failed", `stop failed: ${Cause.pretty(exit.cause)}`)
            return
          }
          yield* transition(entry, "stopped")
        })

      const withEntry = <A, E>(id: string, f: (entry: Entry) => Effect.Effect<A, E>) =>
        Effect.flatMap(lookup(id), (entry) => entry.lock.withPermits(1)(f(entry)))

      /** Registered plugins in dependency order (dependencies first); cycles are reported, not followed. */
      const dependencyOrder = () => {
        const order: Array<Entry> = []
        const cyclic = new Set<string>()
        const visiting = new Set<string>()
        const done = new Set<string>()
        const visit = (entry: Entry, path: ReadonlyArray<string>): void => {
          const id = entry.manifest.id
          if (done.has(id)) return
          if (visiting.has(id)) {
            for (const member of path.slice(path.indexOf(id))) cyclic.add(member)
            return
          }
          visiting.add(id)
          for (const dependency of Object.keys(entry.manifest.dependencies).sort()) {
            const other = entries.get(dependency)
            if (other !== undefined) visit(other, [...path, id])
          }
          visiting.delete(id)
          done.add(id)
          order.push(entry)
        }
        for (const id of Array.from(entries.keys()).sort()) visit(entries.get(id)!, [])
        return { order, cyclic }
      }

      // Plugins start concurrently; each waits only for its own dependencies. The order is topological,
      // so with bounded concurrency a waiting plugin's dependencies already hold (or held) a slot.
      const startAll = Effect.gen(function* () {
        const { order, cyclic } = dependencyOrder()
        const settled = new Map<string, Deferred.Deferred<void>>()
        for (const entry of order) settled.set(entry.manifest.id, yield* Deferred.make<void>())
        yield* Effect.forEach(
          order,
          (entry) =>
            Effect.gen(function* () {
              if (cyclic.has(entry.manifest.id)) {
                yield* transition(
                  entry,
                  "failed",
                  `dependency cycle among ${Array.from(cyclic).sort().join(", ")}`
                )
                return
              }
              if (entry.state !== "registered" && entry.state !== "stopped") return
              if (!entry.autoStart) return
              for (const dependency of Object.keys(entry.manifest.dependencies)) {
                const done = settled.get(dependency)
                if (done !== undefined) yield* Deferred.await(done)
              }
              yield* entry.lock.withPermits(1)(startEntry(entry)).pipe(Effect.ignore)
            }).pipe(Effect.ensuring(Deferred.done(settled.get(entry.manifest.id)!, Exit.void))),
          { concurrency: options.startConcurrency ?? 8, discard: true }
        )
      })

      const stopAll = Effect.gen(function* () {
        const { order } = dependencyOrder()
        for (const entry of order.reverse()) yield* entry.lock.withPermits(1)(stopEntry(entry))
      })

      const info = (entry: Entry): PluginInfo => ({
        id: entry.manifest.id,
        name: entry.manifest.name,
        version: entry.manifest.version,
        type: entry.manifest.type,
        loader: entry.loader.kind,
        state: entry.state,
        restarts: entry.restarts,
        pid: entry.running?.loaded.pid ?? null,
        memoryBytes: entry.running?.loaded.memoryBytes() ?? null,
        lastExit: entry.lastExit,
        error: entry.error,
        granted: entry.granted,
        dependencies: entry.manifest.dependencies
      })

      yield* Effect.addFinalizer(() => stopAll)

      return PluginManager.of({
        register,
        registerWith,
        unregister: (id) =>
          withEntry(id, (entry) =>
            stopEntry(entry).pipe(
              Effect.zipRight(
                Effect.sync(() => {
                  entries.delete(id)
                })
              ),
              Effect.zipRight(Scope.close(entry.declarations, Exit.void))
            )
          ),
        start: (id) =>
          withEntry(id, (entry) =>
            Effect.suspend(() => {
              // An operator's start lifts a quarantine and forgets the crash loop.
              entry.recentRestarts = []
              return startEntry(entry)
            })
          ),
        stop: (id) => withEntry(id, stopEntry),
        restart: (id, restartOptions) =>
          withEntry(id, (entry) =>
            Effect.gen(function* () {
              const running = entry.running
              const drainMillis = restartOptions?.drainMillis ?? 0
              if (running !== undefined && drainMillis > 0) {
                // Let calls already in flight finish (up to the drain timeout) before the old instance goes.
                const deadline = Date.now() + drainMillis
                while ((yield* running.quota.usage).inbound > 0 && Date.now() < deadline) {
                  yield* Effect.sleep(Duration.millis(10))
                }
              }
              yield* stopEntry(entry)
              yield* transition(entry, "restarting")
              entry.restarts += 1
              countRestart(entry.manifest.id)
              yield* startEntry(entry)
            })
          ),
        startAll,
        stopAll,
        list: Effect.sync(() => Array.from(entries.values(), info)),
        get: (id) => Effect.map(lookup(id), info),
        handlers: (id) => Effect.map(lookup(id), (entry) => entry.running?.loaded.handlers),
        health: (id) =>
          Effect.flatMap(lookup(id), (entry) =>
            entry.running === undefined
              ? Effect.succeed(null)
              : entry.running.loaded.health.pipe(
                  Effect.timeoutTo({
                    duration: Duration.seconds(2),
                    onSuccess: (status): Plugin.HealthStatus => status,
                    onTimeout: (): Plugin.HealthStatus => ({
                      status: "unhealthy",
                      details: "no answer to a health check within 2 s"
                    })
                  })
                )
          )
      })
    })
  )
