/**
 * The node's configuration file: YAML in the original design's shape
 * (`plugins.discovery`, `plugins.development`) plus node, storage, http, p2p,
 * the operator's grants and per-plugin overrides. Layers, lowest first: the
 * embedded defaults, the file, `BLACKHOLE_*` environment variables, then CLI
 * flags. Every layer is decoded with one Schema; an error names the source,
 * the path and the problem.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { fileURLToPath } from "node:url"
import { issuesOf } from "@blackhole/sdk/Errors"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as YAML from "yaml"

const Port = Schema.Int.pipe(Schema.between(0, 65535))
const Positive = Schema.Int.pipe(Schema.positive())

const RestartPolicy = Schema.Struct({
  policy: Schema.optional(Schema.Literal("always", "on-failure", "never")),
  initial_delay_millis: Schema.optional(Positive),
  max_delay_millis: Schema.optional(Positive),
  max_restarts: Schema.optional(Schema.Int.pipe(Schema.nonNegative())),
  window_millis: Schema.optional(Positive)
})

/** Per-plugin settings the operator may override. */
const PluginOverride = Schema.Struct({
  /** `false` keeps a discovered plugin registered but not started. */
  enabled: Schema.optional(Schema.Boolean),
  /** The plugin's configuration (checked against its config.schema.json). */
  config: Schema.optional(Schema.Unknown),
  restart: Schema.optional(RestartPolicy)
})

/** The whole file. Every section and field is optional; defaults fill the rest. */
export const ConfigFile = Schema.Struct({
  node: Schema.optional(
    Schema.Struct({
      data_dir: Schema.optional(Schema.String),
      environment: Schema.optional(Schema.Literal("development", "production", "test")),
      log_level: Schema.optional(Schema.Literal("debug", "info", "warning", "error")),
      /** `auto`: human-readable on a TTY, JSON lines otherwise. */
      log_format: Schema.optional(Schema.Literal("auto", "json", "pretty"))
    })
  ),
  storage: Schema.optional(
    Schema.Struct({
      backend: Schema.optional(Schema.Literal("sqlite", "memory")),
      /** Namespaces kept by a storage plugin instead of the node's backend: namespace → plugin id. */
      namespaces: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String }))
    })
  ),
  http: Schema.optional(
    Schema.Struct({
      enabled: Schema.optional(Schema.Boolean),
      host: Schema.optional(Schema.String),
      port: Schema.optional(Port),
      /** `token` requires `<data>/admin.token` on mutating endpoints; the default whenever host is not loopback. */
      auth: Schema.optional(Schema.Literal("none", "token")),
      /** How long a plugin start/stop/reload request waits before answering 202. */
      operation_timeout_millis: Schema.optional(Positive)
    })
  ),
  p2p: Schema.optional(
    Schema.Struct({
      enabled: Schema.optional(Schema.Boolean),
      listen: Schema.optional(Schema.Array(Schema.String)),
      bootstrap: Schema.optional(Schema.Array(Schema.String)),
      max_connections: Schema.optional(Positive),
      max_message_bytes: Schema.optional(Positive)
    })
  ),
  plugins: Schema.optional(
    Schema.Struct({
      discovery: Schema.optional(
        Schema.Struct({
          enabled: Schema.optional(Schema.Boolean),
          directories: Schema.optional(Schema.Array(Schema.String))
        })
      ),
      development: Schema.optional(
        Schema.Struct({
          hot_reload: Schema.optional(Schema.Boolean),
          debug_mode: Schema.optional(Schema.Boolean),
          /** How much of plugins' own output reaches the node log. */
          plugin_logs: Schema.optional(Schema.Literal("quiet", "normal", "verbose"))
        })
      ),
      /** The operator's grants of sensitive permissions: plugin id → permissions. */
      grants: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Array(Schema.String) })),
      /** Per-plugin overrides: plugin id → settings. */
      overrides: Schema.optional(Schema.Record({ key: Schema.String, value: PluginOverride })),
      /** Restart policy for every supervised plugin without an override. */
      restart: Schema.optional(RestartPolicy),
      /** Run plugin processes under `uid` or `bubblewrap` isolation (see docs/sandbox.md). */
      isolation: Schema.optional(Schema.Literal("none", "uid", "bubblewrap"))
    })
  )
})
/** @see ConfigFile */
export type ConfigFile = typeof ConfigFile.Type

/** A restart policy as the node takes it. */
export interface Restart {
  readonly policy?: "always" | "on-failure" | "never"
  readonly initialDelayMillis?: number
  readonly maxDelayMillis?: number
  readonly maxRestarts?: number
  readonly windowMillis?: number
}

/** The effective configuration: every field resolved. */
export interface Config {
  /** Where it came from (for messages and `config print`). */
  readonly sources: ReadonlyArray<string>
  readonly node: {
    readonly dataDir: string
    readonly environment: "development" | "production" | "test"
    readonly logLevel: "debug" | "info" | "warning" | "error"
    readonly logFormat: "auto" | "json" | "pretty"
  }
  readonly storage: {
    readonly backend: "sqlite" | "memory"
    readonly namespaces: Readonly<Record<string, string>>
  }
  readonly http: {
    readonly enabled: boolean
    readonly host: string
    readonly port: number
    readonly auth: "none" | "token"
    readonly operationTimeoutMillis: number
  }
  readonly p2p: {
    readonly enabled: boolean
    readonly listen: ReadonlyArray<string>
    readonly bootstrap: ReadonlyArray<string>
    readonly maxConnections: number
    readonly maxMessageBytes: number
  }
  readonly plugins: {
    readonly discovery: { readonly enabled: boolean; readonly directories: ReadonlyArray<string> }
    readonly development: {
      readonly hotReload: boolean
      readonly debugMode: boolean
      readonly pluginLogs: "quiet" | "normal" | "verbose"
    }
    readonly grants: Readonly<Record<string, ReadonlyArray<string>>>
    readonly overrides: Readonly<
      Record<string, { readonly enabled: boolean; readonly config?: unknown; readonly restart?: Restart }>
    >
    readonly restart: Restart
    readonly isolation: "none" | "uid" | "bubblewrap"
  }
}

/** A configuration that cannot be used: where, which path, and why. */
export class ConfigError extends Data.TaggedError("ConfigError")<{
  readonly source: string
  readonly problems: ReadonlyArray<{ readonly path: string; readonly message: string }>
}> {
  override get message() {
    const lines = this.problems.map(({ path, message }) => `  ${path === "" ? "(root)" : path}: ${message}`)
    return `invalid configuration in ${this.source}:\n${lines.join("\n")}`
  }
}

/** The directory of the first-party plugins in this checkout. */
export const firstPartyPluginsDir = fileURLToPath(new URL("../../../packages/plugins", import.meta.url))

/** Ids of the first-party plugins (the default config grants what they need). */
export const firstParty = {
  analytics: "dev.blackhole.analytics",
  backup: "dev.blackhole.backup",
  fsStore: "dev.blackhole.fs-store",
  webhook: "dev.blackhole.webhook",
  sync: "dev.blackhole.sync"
} as const

/** The embedded default configuration, as a file would say it. */
export const defaults: ConfigFile = {
  node: { data_dir: ".blackhole", log_level: "info", log_format: "auto" },
  storage: { backend: "sqlite", namespaces: {} },
  http: { enabled: true, host: "127.0.0.1", port: 7420, operation_timeout_millis: 10_000 },
  p2p: {
    enabled: true,
    listen: ["/ip4/127.0.0.1/tcp/0"],
    bootstrap: [],
    max_connections: 64,
    max_message_bytes: 1024 * 1024
  },
  plugins: {
    discovery: { enabled: true, directories: [firstPartyPluginsDir] },
    development: { hot_reload: false, debug_mode: false, plugin_logs: "normal" },
    grants: {
      [firstParty.analytics]: ["http:serve"],
      [firstParty.backup]: ["service:storage:write"],
      [firstParty.webhook]: ["network:connect"],
      [firstParty.sync]: ["p2p:protocol:sync", "service:p2p:send", "service:storage:write"]
    },
    // The webhook needs a target URL: the operator enables it together with its `url`.
    overrides: { [firstParty.webhook]: { enabled: false } },
    restart: {},
    isolation: "none"
  }
}

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** Deep merge of plain objects: arrays and scalars of `over` replace those of `base`. */
export const merge = (base: unknown, over: unknown): unknown => {
  if (!isPlainObject(base) || !isPlainObject(over)) return over === undefined ? base : over
  const out: Record<string, unknown> = { ...base }
  for (const [key, value] of Object.entries(over)) out[key] = merge(base[key], value)
  return out
}

const problemsOf = (error: ParseResult.ParseError) =>
  issuesOf(error).map((issue) => ({ path: issue.path, message: issue.message }))

/** Decodes one layer of configuration; unknown keys are errors (a typo must not pass silently). */
export const decodeLayer = (raw: unknown, source: string): Effect.Effect<ConfigFile, ConfigError> =>
  Schema.decodeUnknown(ConfigFile, { errors: "all", onExcessProperty: "error" })(raw ?? {}).pipe(
    Effect.mapError((error) => new ConfigError({ source, problems: problemsOf(error) }))
  )

/** Reads and decodes a YAML file. */
export const readFile = (file: string): Effect.Effect<ConfigFile, ConfigError> =>
  Effect.gen(function* () {
    const text = yield* Effect.try({
      try: () => fs.readFileSync(file, "utf8"),
      catch: (error) =>
        new ConfigError({
          source: file,
          problems: [{ path: "", message: `cannot read the file: ${(error as Error).message}` }]
        })
    })
    const document = YAML.parseDocument(text, { prettyErrors: true })
    if (document.errors.length > 0) {
      return yield* new ConfigError({
        source: file,
        problems: document.errors.map((error) => ({
          path: error.linePos === undefined ? "" : `line ${error.linePos[0].line}`,
          message: error.message.split("\n")[0] ?? error.message
        }))
      })
    }
    return yield* decodeLayer(document.toJS(), file)
  })

/** The leaf fields an environment variable may set: `BLACKHOLE_HTTP_PORT` → http.port. */
const envPaths: ReadonlyArray<ReadonlyArray<string>> = [
  ["node", "data_dir"],
  ["node", "environment"],
  ["node", "log_level"],
  ["node", "log_format"],
  ["storage", "backend"],
  ["http", "enabled"],
  ["http", "host"],
  ["http", "port"],
  ["http", "auth"],
  ["http", "operation_timeout_millis"],
  ["p2p", "enabled"],
  ["p2p", "listen"],
  ["p2p", "bootstrap"],
  ["p2p", "max_connections"],
  ["p2p", "max_message_bytes"],
  ["plugins", "discovery", "enabled"],
  ["plugins", "discovery", "directories"],
  ["plugins", "development", "hot_reload"],
  ["plugins", "development", "debug_mode"],
  ["plugins", "development", "plugin_logs"],
  ["plugins", "isolation"]
]

/** Short names kept for convenience. */
const envAliases: Readonly<Record<string, ReadonlyArray<string>>> = {
  BLACKHOLE_DATA_DIR: ["node", "data_dir"],
  BLACKHOLE_LOG_LEVEL: ["node", "log_level"],
  BLACKHOLE_LOG_FORMAT: ["node", "log_format"]
}

const listFields = new Set(["p2p.listen", "p2p.bootstrap", "plugins.discovery.directories"])

const setPath = (target: Record<string, unknown>, path: ReadonlyArray<string>, value: unknown) => {
  let node = target
  for (const key of path.slice(0, -1)) {
    if (!isPlainObject(node[key])) node[key] = {}
    node = node[key] as Record<string, unknown>
  }
  node[path[path.length - 1] as string] = value
}

/** The configuration the `BLACKHOLE_*` environment variables give; lists are comma-separated. */
export const fromEnvironment = (
  env: Readonly<Record<string, string | undefined>>
): Effect.Effect<ConfigFile, ConfigError> => {
  const raw: Record<string, unknown> = {}
  const names = new Map<string, ReadonlyArray<string>>([
    ...envPaths.map((path) => [`BLACKHOLE_${path.join("_").toUpperCase()}`, path] as const),
    ...Object.entries(envAliases)
  ])
  for (const [name, path] of names) {
    const value = env[name]
    if (value === undefined || value === "") continue
    const parsed = listFields.has(path.join("."))
      ? value
          .split(",")
          .map((part) => part.trim())
          .filter((part) => part !== "")
      : // Scalars as YAML reads them: 7420 is a number, true a boolean.
        (YAML.parse(value) as unknown)
    setPath(raw, path, parsed)
  }
  return decodeLayer(raw, "the environment (BLACKHOLE_*)")
}

/** `~` and `~/…` are the user's home directory. */
export const expandHome = (path: string): string =>
  path === "~" ? os.homedir() : path.startsWith("~/") ? nodePath.join(os.homedir(), path.slice(2)) : path

const isLoopback = (host: string) =>
  host === "localhost" || host === "::1" || host === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(host)

const restartOf = (raw: typeof RestartPolicy.Type | undefined): Restart => ({
  ...(raw?.policy === undefined ? {} : { policy: raw.policy }),
  ...(raw?.initial_delay_millis === undefined ? {} : { initialDelayMillis: raw.initial_delay_millis }),
  ...(raw?.max_delay_millis === undefined ? {} : { maxDelayMillis: raw.max_delay_millis }),
  ...(raw?.max_restarts === undefined ? {} : { maxRestarts: raw.max_restarts }),
  ...(raw?.window_millis === undefined ? {} : { windowMillis: raw.window_millis })
})

/**
 * Resolves merged layers into the effective configuration. Relative paths in a
 * file are relative to that file's directory; elsewhere, to the working directory.
 */
export const resolve = (file: ConfigFile, sources: ReadonlyArray<string>, baseDir: string): Config => {
  const path = (p: string) => nodePath.resolve(baseDir, expandHome(p))
  const node = file.node ?? {}
  const http = file.http ?? {}
  const p2p = file.p2p ?? {}
  const plugins = file.plugins ?? {}
  const host = http.host ?? "127.0.0.1"
  const overrides: Record<string, { enabled: boolean; config?: unknown; restart?: Restart }> = {}
  for (const [id, override] of Object.entries(plugins.overrides ?? {})) {
    overrides[id] = {
      enabled: override.enabled ?? true,
      ...(override.config === undefined ? {} : { config: override.config }),
      ...(override.restart === undefined ? {} : { restart: restartOf(override.restart) })
    }
  }
  return {
    sources,
    node: {
      dataDir: path(node.data_dir ?? ".blackhole"),
      environment: node.environment ?? (process.env.NODE_ENV === "production" ? "production" : "development"),
      logLevel: node.log_level ?? "info",
      logFormat: node.log_format ?? "auto"
    },
    storage: { backend: file.storage?.backend ?? "sqlite", namespaces: file.storage?.namespaces ?? {} },
    http: {
      enabled: http.enabled ?? true,
      host,
      port: http.port ?? 7420,
      auth: http.auth ?? (isLoopback(host) ? "none" : "token"),
      operationTimeoutMillis: http.operation_timeout_millis ?? 10_000
    },
    p2p: {
      enabled: p2p.enabled ?? true,
      listen: p2p.listen ?? ["/ip4/127.0.0.1/tcp/0"],
      bootstrap: p2p.bootstrap ?? [],
      maxConnections: p2p.max_connections ?? 64,
      maxMessageBytes: p2p.max_message_bytes ?? 1024 * 1024
    },
    plugins: {
      discovery: {
        enabled: plugins.discovery?.enabled ?? true,
        directories: (plugins.discovery?.directories ?? []).map(path)
      },
      development: {
        hotReload: plugins.development?.hot_reload ?? false,
        debugMode: plugins.development?.debug_mode ?? false,
        pluginLogs: plugins.development?.plugin_logs ?? "normal"
      },
      grants: plugins.grants ?? {},
      overrides,
      restart: restartOf(plugins.restart),
      isolation: plugins.isolation ?? "none"
    }
  }
}

/** What the command line adds on top (each field only when given). */
export interface Flags {
  readonly config?: string
  readonly dataDir?: string
  readonly host?: string
  readonly port?: number
  readonly dev?: boolean
}

/**
 * Loads the effective configuration: defaults, then the file (`--config`, else
 * `BLACKHOLE_CONFIG`, else `./blackhole.yaml` when it exists), then the
 * environment, then the flags.
 */
export const load = (
  flags: Flags = {},
  env: Readonly<Record<string, string | undefined>> = process.env
): Effect.Effect<Config, ConfigError> =>
  Effect.gen(function* () {
    const explicit = flags.config ?? env.BLACKHOLE_CONFIG
    const file =
      explicit !== undefined
        ? nodePath.resolve(expandHome(explicit))
        : fs.existsSync("blackhole.yaml")
          ? nodePath.resolve("blackhole.yaml")
          : undefined
    const fromFile = file === undefined ? {} : yield* readFile(file)
    // Paths in the file are relative to the file; resolve them before merging with other layers.
    const fileDir = file === undefined ? process.cwd() : nodePath.dirname(file)
    const anchored = anchorPaths(fromFile, fileDir)
    const fromEnv = yield* fromEnvironment(env)
    const fromFlags: ConfigFile = {
      ...(flags.dataDir === undefined ? {} : { node: { data_dir: flags.dataDir } }),
      ...(flags.host === undefined && flags.port === undefined
        ? {}
        : {
            http: {
              ...(flags.host === undefined ? {} : { host: flags.host }),
              ...(flags.port === undefined ? {} : { port: flags.port })
            }
          }),
      ...(flags.dev === true
        ? { plugins: { development: { hot_reload: true, debug_mode: true, plugin_logs: "verbose" } } }
        : {})
    }
    const merged = [anchored, fromEnv, fromFlags].reduce<unknown>((acc, layer) => merge(acc, layer), defaults)
    const sources = ["defaults", ...(file === undefined ? [] : [file])]
    if (Object.keys(fromEnv).length > 0) sources.push("environment")
    if (Object.keys(fromFlags).length > 0) sources.push("flags")
    // The merge of valid layers is valid, but decode once more so the types are checked, not assumed.
    const decoded = yield* decodeLayer(merged, sources.join(" + "))
    return resolve(decoded, sources, process.cwd())
  })

/** Makes a file's relative paths absolute against its directory. */
const anchorPaths = (file: ConfigFile, dir: string): ConfigFile => {
  const at = (p: string) => nodePath.resolve(dir, expandHome(p))
  const dataDir = file.node?.data_dir
  const directories = file.plugins?.discovery?.directories
  return {
    ...file,
    ...(file.node === undefined || dataDir === undefined
      ? {}
      : { node: { ...file.node, data_dir: at(dataDir) } }),
    ...(file.plugins === undefined || file.plugins.discovery === undefined || directories === undefined
      ? {}
      : {
          plugins: {
            ...file.plugins,
            discovery: { ...file.plugins.discovery, directories: directories.map(at) }
          }
        })
  }
}

/** The effective configuration as YAML, in the file's own shape (for `blackhole config print`). */
export const toYaml = (config: Config): string => {
  const restart = (r: Restart) => ({
    ...(r.policy === undefined ? {} : { policy: r.policy }),
    ...(r.initialDelayMillis === undefined ? {} : { initial_delay_millis: r.initialDelayMillis }),
    ...(r.maxDelayMillis === undefined ? {} : { max_delay_millis: r.maxDelayMillis }),
    ...(r.maxRestarts === undefined ? {} : { max_restarts: r.maxRestarts }),
    ...(r.windowMillis === undefined ? {} : { window_millis: r.windowMillis })
  })
  const file: ConfigFile = {
    node: {
      data_dir: config.node.dataDir,
      environment: config.node.environment,
      log_level: config.node.logLevel,
      log_format: config.node.logFormat
    },
    storage: { backend: config.storage.backend, namespaces: config.storage.namespaces },
    http: {
      enabled: config.http.enabled,
      host: config.http.host,
      port: config.http.port,
      auth: config.http.auth,
      operation_timeout_millis: config.http.operationTimeoutMillis
    },
    p2p: {
      enabled: config.p2p.enabled,
      listen: config.p2p.listen,
      bootstrap: config.p2p.bootstrap,
      max_connections: config.p2p.maxConnections,
      max_message_bytes: config.p2p.maxMessageBytes
    },
    plugins: {
      discovery: config.plugins.discovery,
      development: {
        hot_reload: config.plugins.development.hotReload,
        debug_mode: config.plugins.development.debugMode,
        plugin_logs: config.plugins.development.pluginLogs
      },
      grants: config.plugins.grants,
      overrides: Object.fromEntries(
        Object.entries(config.plugins.overrides).map(([id, o]) => [
          id,
          {
            enabled: o.enabled,
            ...(o.config === undefined ? {} : { config: o.config }),
            ...(o.restart === undefined ? {} : { restart: restart(o.restart) })
          }
        ])
      ),
      restart: restart(config.plugins.restart),
      isolation: config.plugins.isolation
    }
  }
  return `# sources: ${config.sources.join(", ")}\n${YAML.stringify(file)}`
}
