/**
 * `blackhole start`: the node an operator runs, composed from the effective
 * configuration. Build order is shutdown order reversed: storage and the core
 * services first, then the admin server (answering 503 "starting"), then the
 * plugins. On SIGINT/SIGTERM the phase turns `stopping`, the server stops
 * accepting and drains, plugins stop in reverse dependency order, and storage
 * is flushed and closed last.
 */
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import * as BlackholeNode from "@blackhole/core/BlackholeNode"
import { EventBus } from "@blackhole/core/EventBus"
import * as Identity from "@blackhole/core/Identity"
import { P2P } from "@blackhole/core/P2P"
import { PluginManager } from "@blackhole/core/PluginManager"
import * as StorageBackend from "@blackhole/core/StorageBackend"
import * as HttpServer from "@effect/platform/HttpServer"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as AdminServer from "./AdminServer.js"
import type * as Config from "./Config.js"
import * as NodePhase from "./NodePhase.js"
import * as Tracing from "./Tracing.js"

/** The admin token file: created on first start (0600), reused after. */
export const ensureToken = (dataDir: string): Effect.Effect<string> =>
  Effect.sync(() => {
    const file = nodePath.join(dataDir, "admin.token")
    fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 })
    try {
      const existing = fs.readFileSync(file, "utf8").trim()
      if (existing !== "") return existing
    } catch {
      // Not there yet: create it below.
    }
    const token = crypto.randomBytes(32).toString("base64url")
    // `wx` never overwrites a token another process wrote in the meantime.
    try {
      fs.writeFileSync(file, `${token}\n`, { mode: 0o600, flag: "wx" })
      return token
    } catch {
      return fs.readFileSync(file, "utf8").trim()
    }
  })

/** The core's node configuration from the operator's. */
export const nodeConfigOf = (config: Config.Config): BlackholeNode.NodeConfig => {
  const overrides = Object.entries(config.plugins.overrides)
  return {
    dataDir: config.node.dataDir,
    environment: config.node.environment,
    discovery: {
      directories: config.plugins.discovery.enabled ? config.plugins.discovery.directories : []
    },
    development: { hotReload: config.plugins.development.hotReload },
    grants: config.plugins.grants,
    pluginConfig: Object.fromEntries(
      overrides.filter(([, o]) => o.config !== undefined).map(([id, o]) => [id, o.config])
    ),
    pluginRestart: Object.fromEntries(
      overrides.flatMap(([id, o]) => (o.restart === undefined ? [] : [[id, o.restart] as const]))
    ),
    disabled: overrides.filter(([, o]) => !o.enabled).map(([id]) => id),
    restart: config.plugins.restart,
    storage: { namespaces: config.storage.namespaces },
    ...(config.p2p.enabled
      ? {
          p2p: {
            listen: config.p2p.listen,
            bootstrap: config.p2p.bootstrap,
            maxConnections: config.p2p.maxConnections,
            maxMessageBytes: config.p2p.maxMessageBytes
          }
        }
      : {}),
    subprocess: {
      isolation: config.plugins.isolation,
      ...(config.plugins.development.pluginLogs === "quiet" ? { logLinesPerSecond: 0 } : {}),
      ...(config.plugins.development.pluginLogs === "verbose" ? { logLinesPerSecond: 10_000 } : {})
    }
  }
}

const levelOf = (level: Config.Config["node"]["logLevel"]) =>
  level === "debug"
    ? LogLevel.Debug
    : level === "info"
      ? LogLevel.Info
      : level === "warning"
        ? LogLevel.Warning
        : LogLevel.Error

/** Structured logs: JSON lines when not on a TTY (or when asked), human-readable otherwise. */
export const loggerLayer = (config: Config.Config): Layer.Layer<never> => {
  const json = config.node.logFormat === "json" || (config.node.logFormat === "auto" && !process.stdout.isTTY)
  const level = config.plugins.development.debugMode ? LogLevel.Debug : levelOf(config.node.logLevel)
  const logger = json ? Logger.withLeveledConsole(Logger.jsonLogger) : Logger.prettyLoggerDefault
  // NodeRuntime.runMain may already have swapped the default logger for its pretty one: replace either.
  return Layer.mergeAll(
    Logger.replace(Logger.defaultLogger, logger),
    Logger.replace(Logger.prettyLoggerDefault, logger),
    Logger.minimumLogLevel(level)
  )
}

/** On a TTY, one line per plugin as it starts (stderr, so `--json` output stays clean). */
const progress = Layer.scopedDiscard(
  Effect.gen(function* () {
    const bus = yield* EventBus
    const phase = yield* NodePhase.NodePhase
    const subscription = yield* bus.subscribe("plugin.*", { subscriber: "progress" })
    yield* subscription.stream.pipe(
      Stream.takeWhile(() => phase.get() === "starting"),
      Stream.runForEach((event) =>
        Effect.sync(() => {
          const data = event.data as { id?: string; state?: string; reason?: string }
          if (data.state === "starting") process.stderr.write(`  … starting ${data.id}\n`)
          else if (data.state === "running") process.stderr.write(`  ✓ ${data.id} running\n`)
          else if (data.state === "failed")
            process.stderr.write(`  ✗ ${data.id} failed: ${data.reason ?? "unknown reason"}\n`)
        })
      ),
      Effect.forkScoped
    )
  })
)

/** The start-up summary: node id, version, address, and a table of plugins. */
const summary = (config: Config.Config, address: string | null) =>
  Effect.gen(function* () {
    const identity = yield* Identity.Identity
    const plugins = yield* (yield* PluginManager).list
    const server = yield* Effect.serviceOption(HttpServer.HttpServer)
    // The bound address (port 0 picks a free one), not the configured one.
    const bound = Option.map(server, (s) =>
      s.address._tag === "TcpAddress" ? `http://${s.address.hostname}:${s.address.port}` : String(address)
    )
    const p2p = yield* Effect.serviceOption(P2P)
    const listen = Option.isSome(p2p) ? yield* p2p.value.listenAddresses : []
    const width = Math.max(6, ...plugins.map((p) => p.id.length))
    const rows = plugins.map(
      (p) =>
        `  ${p.id.padEnd(width)}  ${p.version.padEnd(8)}  ${p.loader.padEnd(10)}  ${p.state}${p.error === null || p.state === "running" ? "" : ` — ${p.error}`}`
    )
    yield* Effect.logInfo(
      [
        `Blackhole node ${BlackholeNode.version} ready`,
        `  node id:   ${identity.nodeId}`,
        `  data dir:  ${config.node.dataDir}`,
        `  admin API: ${Option.getOrElse(bound, () => address) ?? "disabled (http.enabled: false)"}${config.http.auth === "token" ? " (bearer token in admin.token)" : ""}`,
        `  p2p:       ${listen.length === 0 ? "disabled (p2p.enabled: false)" : listen.join(", ")}`,
        `  plugins:`,
        `  ${"plugin".padEnd(width)}  ${"version".padEnd(8)}  ${"loader".padEnd(10)}  state`,
        ...rows
      ].join("\n")
    )
  })

/** The whole node as one Layer. */
export const layer = (config: Config.Config, options: { readonly progress?: boolean } = {}) => {
  const nodeConfig = nodeConfigOf(config)
  const dataDir = config.node.dataDir
  const backend =
    config.storage.backend === "memory"
      ? StorageBackend.layerMemory
      : StorageBackend.layerSqlite({ filename: nodePath.join(dataDir, "node.db") })
  const base = BlackholeNode.servicesWith(nodeConfig).pipe(
    Layer.provideMerge(Layer.mergeAll(Identity.layer({ dataDir }), backend)),
    Layer.provide(NodeFileSystem.layer)
  )
  const phase = NodePhase.layer(BlackholeNode.version)
  const address = config.http.enabled ? `http://${config.http.host}:${config.http.port}` : null
  const admin = config.http.enabled
    ? Layer.unwrapEffect(
        Effect.map(
          config.http.auth === "token"
            ? Effect.map(ensureToken(dataDir), (t) => t as string | undefined)
            : Effect.succeed(undefined),
          (token) =>
            AdminServer.layer({
              host: config.http.host,
              port: config.http.port,
              token,
              operationTimeoutMillis: config.http.operationTimeoutMillis,
              version: BlackholeNode.version,
              dataDir,
              profiling: config.plugins.development.debugMode
            })
        )
      )
    : Layer.empty
  // Turns `running` once every plugin had its start; `stopping` as soon as shutdown begins.
  const lifecycle = Layer.scopedDiscard(
    Effect.gen(function* () {
      const phase = yield* NodePhase.NodePhase
      phase.set("running")
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => phase.set("stopping")).pipe(Effect.zipRight(Effect.logInfo("stopping the node")))
      )
      yield* summary(config, address)
    })
  )
  const started = lifecycle.pipe(
    Layer.provideMerge(BlackholeNode.launch(nodeConfig)),
    Layer.provideMerge(options.progress === true ? progress : Layer.empty)
  )
  return started.pipe(
    Layer.provideMerge(admin),
    Layer.provideMerge(phase),
    Layer.provideMerge(base),
    Layer.provide(Tracing.layer(config))
  )
}

/**
 * A second SIGINT/SIGTERM while the node is already stopping forces the exit
 * (the first one is NodeRuntime.runMain's: it interrupts the node, which stops cleanly).
 */
const forceExitOnSecondSignal = Effect.acquireRelease(
  Effect.sync(() => {
    let signals = 0
    const onSignal = (signal: NodeJS.Signals) => {
      signals += 1
      if (signals < 2) return
      process.stderr.write(`second ${signal} while stopping: exiting now\n`)
      process.exit(signal === "SIGINT" ? 130 : 143)
    }
    process.on("SIGINT", onSignal)
    process.on("SIGTERM", onSignal)
    return onSignal
  }),
  (onSignal) =>
    Effect.sync(() => {
      process.off("SIGINT", onSignal)
      process.off("SIGTERM", onSignal)
    })
)

/** Runs the node until interrupted (SIGINT/SIGTERM through NodeRuntime.runMain). */
export const run = (config: Config.Config, options: { readonly progress?: boolean } = {}) =>
  Effect.scoped(Effect.zipRight(forceExitOnSecondSignal, Layer.launch(layer(config, options)))).pipe(
    Effect.provide(loggerLayer(config))
  )
