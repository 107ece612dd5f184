import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as YAML from "yaml"
import * as Config from "../src/Config.js"

const root = fs.mkdtempSync(path.join(os.tmpdir(), "bh-config-test-"))
afterAll(() => fs.rmSync(root, { recursive: true, force: true }))

let files = 0
/** Writes a config file in its own directory (relative paths in it resolve there). */
const file = (yaml: string, name = "blackhole.yaml"): string => {
  const dir = path.join(root, `case-${files++}`)
  fs.mkdirSync(dir)
  const at = path.join(dir, name)
  fs.writeFileSync(at, yaml)
  return at
}

const problemPaths = (error: Config.ConfigError) => error.problems.map((problem) => problem.path)

describe("Config.load", () => {
  it.effect("without file, environment or flags gives the embedded defaults", () =>
    Effect.gen(function* () {
      const config = yield* Config.load({}, {})
      assert.deepStrictEqual(config.sources, ["defaults"])
      assert.strictEqual(config.node.dataDir, path.resolve(".blackhole"))
      assert.strictEqual(config.storage.backend, "sqlite")
      assert.deepStrictEqual(
        {
          host: config.http.host,
          port: config.http.port,
          auth: config.http.auth,
          enabled: config.http.enabled
        },
        { host: "127.0.0.1", port: 7420, auth: "none", enabled: true }
      )
      assert.deepStrictEqual(config.plugins.discovery, {
        enabled: true,
        directories: [Config.firstPartyPluginsDir]
      })
      // The first-party plugins' grants are part of the default config.
      assert.deepStrictEqual(config.plugins.grants[Config.firstParty.backup], ["service:storage:write"])
      assert.strictEqual(config.plugins.overrides[Config.firstParty.webhook]?.enabled, false)
      assert.deepStrictEqual(config.plugins.development, {
        hotReload: false,
        debugMode: false,
        pluginLogs: "normal"
      })
    })
  )

  it.effect("layers file < environment < flags", () =>
    Effect.gen(function* () {
      const config = file("http:\n  port: 8001\n  host: 127.0.0.2\nnode:\n  log_level: debug\n")
      const fromFile = yield* Config.load({ config }, {})
      assert.strictEqual(fromFile.http.port, 8001)
      assert.strictEqual(fromFile.http.host, "127.0.0.2")
      assert.deepStrictEqual(fromFile.sources, ["defaults", config])

      const env = { BLACKHOLE_HTTP_PORT: "8002", BLACKHOLE_LOG_LEVEL: "error" }
      const fromEnv = yield* Config.load({ config }, env)
      assert.strictEqual(fromEnv.http.port, 8002)
      assert.strictEqual(fromEnv.node.logLevel, "error")
      // What the environment does not set still comes from the file.
      assert.strictEqual(fromEnv.http.host, "127.0.0.2")
      assert.deepStrictEqual(fromEnv.sources, ["defaults", config, "environment"])

      const fromFlags = yield* Config.load({ config, port: 8003 }, env)
      assert.strictEqual(fromFlags.http.port, 8003)
      assert.strictEqual(fromFlags.node.logLevel, "error")
      assert.deepStrictEqual(fromFlags.sources, ["defaults", config, "environment", "flags"])
    })
  )

  it.effect("finds the file through BLACKHOLE_CONFIG, and --config wins over it", () =>
    Effect.gen(function* () {
      const viaEnv = file("http:\n  port: 8101\n")
      const viaFlag = file("http:\n  port: 8102\n")
      assert.strictEqual((yield* Config.load({}, { BLACKHOLE_CONFIG: viaEnv })).http.port, 8101)
      assert.strictEqual(
        (yield* Config.load({ config: viaFlag }, { BLACKHOLE_CONFIG: viaEnv })).http.port,
        8102
      )
    })
  )

  it.effect("reads lists and scalars from the environment", () =>
    Effect.gen(function* () {
      const config = yield* Config.load(
        {},
        {
          BLACKHOLE_PLUGINS_DISCOVERY_DIRECTORIES: "/srv/a, /srv/b",
          BLACKHOLE_P2P_ENABLED: "false",
          BLACKHOLE_HTTP_AUTH: "token",
          BLACKHOLE_DATA_DIR: "/srv/data"
        }
      )
      assert.deepStrictEqual(config.plugins.discovery.directories, ["/srv/a", "/srv/b"])
      assert.strictEqual(config.p2p.enabled, false)
      assert.strictEqual(config.http.auth, "token")
      assert.strictEqual(config.node.dataDir, "/srv/data")
    })
  )

  it.effect("expands ~ in the file, the environment and the flags", () =>
    Effect.gen(function* () {
      const home = os.homedir()
      const config = file(
        "node:\n  data_dir: ~/bh-data\nplugins:\n  discovery:\n    directories: [~/plugins]\n"
      )
      const loaded = yield* Config.load({ config }, {})
      assert.strictEqual(loaded.node.dataDir, path.join(home, "bh-data"))
      assert.deepStrictEqual(loaded.plugins.discovery.directories, [path.join(home, "plugins")])
      assert.strictEqual((yield* Config.load({ dataDir: "~" }, {})).node.dataDir, home)
      assert.strictEqual(
        (yield* Config.load({}, { BLACKHOLE_DATA_DIR: "~/x" })).node.dataDir,
        path.join(home, "x")
      )
      assert.strictEqual(Config.expandHome("~other/x"), "~other/x")
    })
  )

  it.effect("resolves a file's relative paths against the file's directory", () =>
    Effect.gen(function* () {
      const config = file("node:\n  data_dir: data\nplugins:\n  discovery:\n    directories: [./plugins]\n")
      const loaded = yield* Config.load({ config }, {})
      assert.strictEqual(loaded.node.dataDir, path.join(path.dirname(config), "data"))
      assert.deepStrictEqual(loaded.plugins.discovery.directories, [
        path.join(path.dirname(config), "plugins")
      ])
      // A flag's relative path is relative to the working directory.
      assert.strictEqual(
        (yield* Config.load({ config, dataDir: "here" }, {})).node.dataDir,
        path.resolve("here")
      )
    })
  )

  it.effect("rejects unknown keys, naming the file and each path", () =>
    Effect.gen(function* () {
      const config = file("bogus: 1\nhttp:\n  prot: 8000\nplugins:\n  discovery:\n    enable: true\n")
      const error = yield* Effect.flip(Config.load({ config }, {}))
      assert.strictEqual(error._tag, "ConfigError")
      assert.strictEqual(error.source, config)
      const paths = problemPaths(error)
      for (const expected of ["bogus", "http.prot", "plugins.discovery.enable"]) {
        assert.include(paths, expected)
      }
      assert.include(error.message, config)
      assert.include(error.message, "http.prot")
    })
  )

  it.effect("rejects a value of the wrong type with its path", () =>
    Effect.gen(function* () {
      const config = file("http:\n  port: 70000\n  auth: maybe\n")
      const error = yield* Effect.flip(Config.load({ config }, {}))
      assert.include(problemPaths(error), "http.port")
      assert.include(problemPaths(error), "http.auth")
    })
  )

  it.effect("names the environment when a BLACKHOLE_* value is bad", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(Config.load({}, { BLACKHOLE_HTTP_PORT: "not-a-port" }))
      assert.match(error.source, /environment/)
      assert.include(problemPaths(error), "http.port")
    })
  )

  it.effect("reports a missing file and a YAML syntax error against the file", () =>
    Effect.gen(function* () {
      const missing = path.join(root, "nope.yaml")
      const notThere = yield* Effect.flip(Config.load({ config: missing }, {}))
      assert.strictEqual(notThere.source, missing)
      assert.match(notThere.message, /cannot read/)

      const broken = file("http:\n  port: [1,\n")
      const syntax = yield* Effect.flip(Config.load({ config: broken }, {}))
      assert.strictEqual(syntax.source, broken)
      assert.match(syntax.problems[0]?.path ?? "", /^line \d+/)
    })
  )

  it.effect("turns token auth on by default for a host that is not loopback", () =>
    Effect.gen(function* () {
      const auth = (env: Record<string, string>) => Effect.map(Config.load({}, env), (c) => c.http.auth)
      assert.strictEqual(yield* auth({ BLACKHOLE_HTTP_HOST: "0.0.0.0" }), "token")
      assert.strictEqual(yield* auth({ BLACKHOLE_HTTP_HOST: "192.168.1.10" }), "token")
      assert.strictEqual(yield* auth({ BLACKHOLE_HTTP_HOST: "127.0.0.1" }), "none")
      assert.strictEqual(yield* auth({ BLACKHOLE_HTTP_HOST: "127.1.2.3" }), "none")
      assert.strictEqual(yield* auth({ BLACKHOLE_HTTP_HOST: "localhost" }), "none")
      assert.strictEqual(yield* auth({ BLACKHOLE_HTTP_HOST: "::1" }), "none")
      // An explicit choice wins, both ways.
      assert.strictEqual(yield* auth({ BLACKHOLE_HTTP_HOST: "0.0.0.0", BLACKHOLE_HTTP_AUTH: "none" }), "none")
      assert.strictEqual(yield* auth({ BLACKHOLE_HTTP_AUTH: "token" }), "token")
      assert.strictEqual((yield* Config.load({ host: "0.0.0.0" }, {})).http.auth, "token")
    })
  )

  it.effect("--dev turns on hot reload, debug mode and verbose plugin logs", () =>
    Effect.gen(function* () {
      const config = yield* Config.load({ dev: true }, {})
      assert.deepStrictEqual(config.plugins.development, {
        hotReload: true,
        debugMode: true,
        pluginLogs: "verbose"
      })
    })
  )

  it.effect("keeps per-plugin overrides, merging them with the defaults", () =>
    Effect.gen(function* () {
      const config = file(
        [
          "plugins:",
          "  overrides:",
          "    com.example.one:",
          "      config: { greeting: hi }",
          "      restart: { policy: never }",
          "    dev.blackhole.webhook:",
          "      enabled: true",
          "      config: { url: 'http://example.test/hook' }",
          "  grants:",
          "    com.example.one: [network:connect]"
        ].join("\n")
      )
      const loaded = yield* Config.load({ config }, {})
      assert.deepStrictEqual(loaded.plugins.overrides["com.example.one"], {
        enabled: true,
        config: { greeting: "hi" },
        restart: { policy: "never" }
      })
      assert.deepStrictEqual(loaded.plugins.overrides[Config.firstParty.webhook], {
        enabled: true,
        config: { url: "http://example.test/hook" }
      })
      assert.deepStrictEqual(loaded.plugins.grants["com.example.one"], ["network:connect"])
      // The default grants stay unless the file replaces that plugin's entry.
      assert.deepStrictEqual(loaded.plugins.grants[Config.firstParty.backup], ["service:storage:write"])
    })
  )
})

describe("Config.toYaml", () => {
  it.effect("prints a file that loads back to the same configuration", () =>
    Effect.gen(function* () {
      const original = yield* Config.load(
        {
          config: file(
            "http:\n  port: 8201\nplugins:\n  overrides:\n    com.example.x: { config: { a: 1 } }\n"
          )
        },
        { BLACKHOLE_HTTP_HOST: "0.0.0.0" }
      )
      const yaml = Config.toYaml(original)
      assert.match(yaml, /^# sources: defaults, /)
      const printed = file(yaml, "printed.yaml")
      const reloaded = yield* Config.load({ config: printed }, {})
      assert.deepStrictEqual({ ...reloaded, sources: [] }, { ...original, sources: [] })
      assert.deepStrictEqual(YAML.parse(yaml).http, {
        enabled: true,
        host: "0.0.0.0",
        port: 8201,
        auth: "token",
        operation_timeout_millis: 10_000
      })
    })
  )
})
