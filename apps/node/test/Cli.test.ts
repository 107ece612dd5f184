/**
 * The built `blackhole` CLI as a real process: help, exit codes, `plugin
 * validate` on good and bad plugin directories, `config print` precedence,
 * and the client commands against an unreachable URL and against a stand-in
 * admin API (so their output and the token are checked without a node).
 */
import * as fs from "node:fs"
import * as http from "node:http"
import type * as net from "node:net"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as YAML from "yaml"
import { assertBuilt, blackhole, cleanup, freePort, hasAnsi, tempDir } from "./support/cli.js"

const scratch = tempDir("bh-cli-test-")
beforeAll(assertBuilt)
afterAll(() => cleanup(scratch))

let dirs = 0
/** A directory with the given files (objects are written as JSON). */
const directory = (files: Record<string, unknown>): string => {
  const dir = path.join(scratch, `dir-${dirs++}`)
  for (const [name, contents] of Object.entries(files)) {
    const at = path.join(dir, name)
    fs.mkdirSync(path.dirname(at), { recursive: true })
    fs.writeFileSync(at, typeof contents === "string" ? contents : JSON.stringify(contents, null, 2))
  }
  fs.mkdirSync(dir, { recursive: true })
  return dir
}

const manifest = {
  id: "com.example.good",
  name: "Good",
  version: "1.0.0",
  type: "service",
  permissions: ["storage:read", "events:publish:good.*"],
  configuration: { $schema: "config.schema.json" },
  services: ["good"]
}

const schema = {
  $schema: "http://json-schema.org/draft-07/schema#",
  type: "object",
  required: ["name"],
  properties: {
    name: { type: "string", minLength: 1 },
    port: { type: "integer", minimum: 1, maximum: 65535 },
    tags: { type: "array", items: { type: "string" } }
  },
  additionalProperties: false
}

/** A complete, valid plugin directory (built: `main` exists); `overrides` replace manifest fields. */
const plugin = (overrides: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) =>
  directory({
    "plugin.json": { ...manifest, ...overrides },
    "config.schema.json": schema,
    "dist/index.js": "export default {}\n",
    ...extra
  })

const noColour = (text: string) => assert.isFalse(hasAnsi(text), "no ANSI colours when not on a terminal")

describe.concurrent("help", { timeout: 120_000 }, () => {
  it("lists every command at the root, with the exit codes", async () => {
    const result = await blackhole(["--help"])
    assert.strictEqual(result.code, 0, result.stderr)
    for (const command of [
      "start",
      "status",
      "call",
      "config print",
      "plugin list",
      "plugin info",
      "plugin validate",
      "plugin reload",
      "plugin start",
      "plugin stop",
      "plugin new"
    ]) {
      assert.include(result.stdout, `- ${command} `, `the root help lists ${command}`)
    }
    assert.include(result.stdout, "EXIT CODES")
    assert.match(result.stdout, /3 {2}the node's HTTP API did not answer/)
    noColour(result.stdout)
  })

  it("lists the plugin commands under `plugin --help`", async () => {
    const result = await blackhole(["plugin", "--help"])
    assert.strictEqual(result.code, 0, result.stderr)
    for (const command of ["list", "info", "validate", "reload", "start", "stop", "new"]) {
      assert.match(result.stdout, new RegExp(`- ${command} `), `plugin help lists ${command}`)
    }
  })

  it("documents each command's options", async () => {
    const validate = await blackhole(["plugin", "validate", "--help"])
    assert.strictEqual(validate.code, 0)
    for (const option of ["--config-file", "--plugin-config", "--config", "--data-dir", "--json"]) {
      assert.include(validate.stdout, option)
    }
    const call = await blackhole(["call", "--help"])
    for (const option of ["--url", "--json", "<service>", "<method>"]) assert.include(call.stdout, option)
    const start = await blackhole(["start", "--help"])
    for (const option of ["--config", "--data-dir", "--port", "--host", "--dev"])
      assert.include(start.stdout, option)
  })

  it("colours only when asked to (FORCE_COLOR), and never with NO_COLOR", async () => {
    const broken = plugin({ type: "widget" })
    const forced = await blackhole(["plugin", "validate", broken], {
      env: { NO_COLOR: "", FORCE_COLOR: "1" }
    })
    assert.isTrue(hasAnsi(forced.stdout))
    const both = await blackhole(["plugin", "validate", broken], { env: { NO_COLOR: "1", FORCE_COLOR: "1" } })
    assert.isFalse(hasAnsi(both.stdout))
    const help = await blackhole(["--help"], { env: { NO_COLOR: "1", FORCE_COLOR: "1" } })
    assert.isFalse(hasAnsi(help.stdout), "not even in @effect/cli's own help")
  })

  it("prints the version", async () => {
    const result = await blackhole(["--version"])
    assert.strictEqual(result.code, 0)
    assert.match(result.stdout.trim(), /^\d+\.\d+\.\d+/)
  })
})

describe.concurrent("usage errors exit 2", { timeout: 120_000 }, () => {
  it("rejects an unknown command", async () => {
    const result = await blackhole(["frobnicate"])
    assert.strictEqual(result.code, 2)
    assert.include(result.stderr, "Invalid subcommand for blackhole")
  })

  it("rejects an unknown option", async () => {
    const result = await blackhole(["status", "--bogus"])
    assert.strictEqual(result.code, 2)
    assert.include(result.stderr, "--bogus")
  })

  it("rejects a port out of range, saying so", async () => {
    const result = await blackhole(["config", "print", "--port", "70000"])
    assert.strictEqual(result.code, 2)
    assert.include(result.stderr, "--port must be between 0 and 65535 (got 70000)")
  })

  it("rejects a payload for `call` that is not JSON, before contacting anything", async () => {
    const result = await blackhole(["call", "greeter", "greet", "{name: Ada}", "--url", "http://127.0.0.1:9"])
    assert.strictEqual(result.code, 2)
    assert.include(result.stderr, "the payload is not JSON")
  })

  it("rejects a --url that is not http(s)", async () => {
    const result = await blackhole(["status", "--url", "ftp://example.test"])
    assert.strictEqual(result.code, 2)
    assert.include(result.stderr, "--url must be an http:// or https:// URL")
  })

  it("rejects --plugin-config that is not JSON", async () => {
    const result = await blackhole(["plugin", "validate", plugin(), "--plugin-config", "{oops"])
    assert.strictEqual(result.code, 2)
    assert.include(result.stderr, "--plugin-config is not JSON")
  })
})

describe.concurrent("plugin validate", { timeout: 120_000 }, () => {
  it("accepts the example greeter plugin", async () => {
    const greeter = fileURLToPath(new URL("../plugins/greeter", import.meta.url))
    const result = await blackhole(["plugin", "validate", greeter])
    assert.strictEqual(result.code, 0, result.stdout + result.stderr)
    assert.include(result.stdout, "dev.blackhole.example.greeter")
    assert.include(result.stdout, "✓ valid")
    assert.notInclude(result.stdout, "warning")
  })

  it("accepts a complete plugin and a config that fits its schema", async () => {
    const dir = plugin()
    const result = await blackhole(["plugin", "validate", dir, "--plugin-config", '{"name":"x","port":8080}'])
    assert.strictEqual(result.code, 0, result.stdout + result.stderr)
    assert.include(result.stdout, "com.example.good 1.0.0 (service)")
    noColour(result.stdout)
  })

  const invalid: ReadonlyArray<readonly [string, Record<string, unknown>, ReadonlyArray<string>]> = [
    ["a missing id", { id: undefined }, ["plugin.json id: is missing"]],
    ["a wrong type", { type: "widget" }, ["plugin.json type:", '(got "widget")']],
    [
      "a bad permission",
      { permissions: ["storage:read", "launch-missiles"] },
      ["plugin.json permissions[1]:"]
    ],
    ["a bad version", { version: "1.0" }, ["plugin.json version:", "is not a semantic version"]],
    ["an id that is not reverse-DNS", { id: "Good" }, ["plugin.json id:", "reverse-DNS"]],
    [
      "maxVersion below minVersion",
      { compatibility: { minVersion: "2.0.0", maxVersion: "1.0.0" } },
      ["compatibility.maxVersion"]
    ],
    ["a main outside the plugin", { main: "../escape.js" }, ["plugin.json main:"]]
  ]
  for (const [what, overrides, expected] of invalid) {
    it(`rejects a manifest with ${what}, naming the path`, async () => {
      const result = await blackhole(["plugin", "validate", plugin(overrides)])
      assert.strictEqual(result.code, 1, result.stdout + result.stderr)
      for (const text of expected) assert.include(result.stdout, text)
      assert.include(result.stdout, "✗ invalid")
    })
  }

  it("reports every problem of a manifest at once", async () => {
    const dir = plugin({
      id: undefined,
      name: "",
      version: "x",
      type: 3,
      permissions: ["nope"],
      services: ["Bad Name"]
    })
    const result = await blackhole(["plugin", "validate", dir, "--json"])
    assert.strictEqual(result.code, 1)
    const report = JSON.parse(result.stdout)
    assert.strictEqual(report.valid, false)
    const paths = report.errors.map((error: { path: string }) => error.path)
    for (const expected of ["id", "name", "version", "type", "permissions[0]", "services[0]"]) {
      assert.include(paths, expected)
    }
  })

  it("rejects a plugin.json that is not JSON, and a directory without one", async () => {
    const broken = await blackhole(["plugin", "validate", directory({ "plugin.json": "{ id: " })])
    assert.strictEqual(broken.code, 1)
    assert.include(broken.stdout, "plugin.json: invalid JSON")
    const empty = await blackhole(["plugin", "validate", directory({})])
    assert.strictEqual(empty.code, 1)
    assert.include(empty.stdout, "a plugin directory needs a plugin.json")
    const nowhere = await blackhole(["plugin", "validate", path.join(scratch, "no-such-dir")])
    assert.strictEqual(nowhere.code, 1)
    assert.include(nowhere.stderr, "is not a directory")
  })

  it("rejects a config that violates config.schema.json, with every path", async () => {
    const result = await blackhole([
      "plugin",
      "validate",
      plugin(),
      "--plugin-config",
      JSON.stringify({ port: 0, tags: ["a", 2], colour: "red" })
    ])
    assert.strictEqual(result.code, 1, result.stdout + result.stderr)
    for (const text of [
      "config (--plugin-config) name: must have required property 'name'",
      "config (--plugin-config) port: must be >= 1",
      "config (--plugin-config) tags[1]: must be string",
      "config (--plugin-config) colour: must NOT have additional properties"
    ]) {
      assert.include(result.stdout, text)
    }
  })

  it("checks a config file, YAML or JSON", async () => {
    const dir = plugin()
    const yaml = path.join(directory({ "c.yaml": "name: ''\nport: 99999\n" }), "c.yaml")
    const bad = await blackhole(["plugin", "validate", dir, "--config-file", yaml])
    assert.strictEqual(bad.code, 1)
    assert.include(bad.stdout, `config (${yaml}) name:`)
    assert.include(bad.stdout, `config (${yaml}) port:`)
    const json = path.join(directory({ "c.json": { name: "fine" } }), "c.json")
    const good = await blackhole(["plugin", "validate", dir, "--config-file", json])
    assert.strictEqual(good.code, 0, good.stdout + good.stderr)
    const both = await blackhole(["plugin", "validate", dir, "--config-file", json, "--plugin-config", "{}"])
    assert.strictEqual(both.code, 2)
  })

  it("checks the node config's plugins.overrides.<id>.config when no config is given", async () => {
    const dir = plugin()
    const node = path.join(
      directory({
        "blackhole.yaml": "plugins:\n  overrides:\n    com.example.good:\n      config: { port: 'x' }\n"
      }),
      "blackhole.yaml"
    )
    const result = await blackhole(["plugin", "validate", dir, "--config", node])
    assert.strictEqual(result.code, 1, result.stdout + result.stderr)
    assert.include(result.stdout, 'plugins.overrides."com.example.good".config')
    assert.include(result.stdout, "port: must be integer")
  })

  it("checks the defaults ({}) like the node would when nothing is configured", async () => {
    const result = await blackhole(["plugin", "validate", plugin()])
    assert.strictEqual(result.code, 1)
    assert.include(
      result.stdout,
      "config (none given: the defaults) name: must have required property 'name'"
    )
  })

  it("only warns when the node's version is outside the plugin's compatibility", async () => {
    const dir = plugin({ compatibility: { minVersion: "99.0.0", maxVersion: "99.9.9" } })
    const result = await blackhole(["plugin", "validate", dir, "--plugin-config", '{"name":"x"}'])
    assert.strictEqual(result.code, 0, result.stdout + result.stderr)
    assert.include(result.stdout, "warning")
    assert.include(result.stdout, "compatibility")
    assert.include(result.stdout, "99.0.0")
    assert.include(result.stdout, "✓ valid (1 warning)")
  })

  it("warns when the plugin is not built yet (no main, no config.schema.json)", async () => {
    const dir = directory({ "plugin.json": manifest })
    const result = await blackhole(["plugin", "validate", dir, "--json"])
    assert.strictEqual(result.code, 0, result.stdout + result.stderr)
    const report = JSON.parse(result.stdout)
    assert.deepStrictEqual(
      report.warnings.map((warning: { path: string }) => warning.path),
      ["main", "configuration.$schema"]
    )
    assert.deepStrictEqual(report.errors, [])
  })
})

describe.concurrent("config print", { timeout: 120_000 }, () => {
  const port = async (args: ReadonlyArray<string>, env: Record<string, string> = {}) => {
    const result = await blackhole(["config", "print", ...args], { env })
    assert.strictEqual(result.code, 0, result.stderr)
    return YAML.parse(result.stdout).http.port as number
  }

  it("prints the defaults, then the file, BLACKHOLE_HTTP_PORT and --port in that precedence", async () => {
    const file = path.join(directory({ "node.yaml": "http:\n  port: 8001\n" }), "node.yaml")
    assert.strictEqual(await port([]), 7420)
    assert.strictEqual(await port(["--config", file]), 8001)
    assert.strictEqual(await port(["--config", file], { BLACKHOLE_HTTP_PORT: "8002" }), 8002)
    assert.strictEqual(
      await port(["--config", file, "--port", "8003"], { BLACKHOLE_HTTP_PORT: "8002" }),
      8003
    )
    assert.strictEqual(await port([], { BLACKHOLE_CONFIG: file }), 8001)
  })

  it("takes the options given to `blackhole` itself, before the command", async () => {
    const result = await blackhole(["--port", "8004", "--data-dir", "/srv/x", "config", "print", "--json"])
    assert.strictEqual(result.code, 0, result.stderr)
    const config = JSON.parse(result.stdout)
    assert.strictEqual(config.http.port, 8004)
    assert.strictEqual(config.node.data_dir, "/srv/x")
  })

  it("names its sources and resolves --data-dir", async () => {
    const file = path.join(directory({ "node.yaml": "node:\n  data_dir: data\n" }), "node.yaml")
    const result = await blackhole(["config", "print", "--config", file, "--data-dir", "/srv/bh"])
    assert.strictEqual(result.code, 0, result.stderr)
    assert.match(result.stdout, new RegExp(`^# sources: defaults, ${file}, flags`))
    assert.strictEqual(YAML.parse(result.stdout).node.data_dir, "/srv/bh")
  })

  it("prints the same document as JSON with --json", async () => {
    const result = await blackhole(["config", "print", "--json", "--host", "0.0.0.0"])
    assert.strictEqual(result.code, 0, result.stderr)
    const config = JSON.parse(result.stdout)
    assert.strictEqual(config.http.host, "0.0.0.0")
    assert.strictEqual(config.http.auth, "token")
  })

  it("exits 1 on a bad config file, naming the file and the path", async () => {
    const file = path.join(directory({ "bad.yaml": "http:\n  port: high\n  bogus: true\n" }), "bad.yaml")
    const result = await blackhole(["config", "print", "--config", file])
    assert.strictEqual(result.code, 1)
    assert.include(result.stderr, `invalid configuration in ${file}`)
    assert.include(result.stderr, "http.port:")
    assert.include(result.stderr, "http.bogus:")
    assert.strictEqual(result.stdout, "")
  })

  it("exits 1 on a config file that does not exist, and on a bad BLACKHOLE_* value", async () => {
    const missing = path.join(scratch, "missing.yaml")
    const noFile = await blackhole(["config", "print", "--config", missing])
    assert.strictEqual(noFile.code, 1)
    assert.include(noFile.stderr, missing)
    const badEnv = await blackhole(["config", "print"], { env: { BLACKHOLE_HTTP_PORT: "many" } })
    assert.strictEqual(badEnv.code, 1)
    assert.include(badEnv.stderr, "http.port")
  })
})

describe.concurrent("talking to a node that is not there", { timeout: 120_000 }, () => {
  it("exits 3 from call, status and plugin commands", async () => {
    const url = `http://127.0.0.1:${await freePort()}`
    for (const args of [
      ["call", "greeter", "greet", '{"name":"Ada"}', "--url", url],
      ["status", "--url", url],
      ["plugin", "list", "--url", url],
      ["plugin", "stop", "com.example.x", "--url", url]
    ]) {
      const result = await blackhole(args)
      assert.strictEqual(result.code, 3, `${args.join(" ")}: ${result.stderr}`)
      assert.include(result.stderr, `cannot reach the node at ${url}`)
    }
  })

  it("takes the default URL from the config (and a wildcard host means loopback)", async () => {
    const port = await freePort()
    const file = path.join(
      directory({ "node.yaml": `http:\n  host: 0.0.0.0\n  port: ${port}\n` }),
      "node.yaml"
    )
    const result = await blackhole(["status", "--config", file])
    assert.strictEqual(result.code, 3)
    assert.include(result.stderr, `http://127.0.0.1:${port}`)
  })
})

/** A stand-in for the node's admin API that records what it was asked. */
const standIn = () => {
  const requests: Array<{ method: string; url: string; authorization: string | undefined; body: string }> = []
  const healthy = {
    status: 200,
    body: {
      status: "ok",
      nodeId: "12D3KooWStandIn",
      version: "0.1.0",
      uptimeSeconds: 3723,
      plugins: { total: 2, running: 1, failed: 0, quarantined: 0 }
    }
  }
  let health: { status: number; body: unknown } = healthy
  const plugins = [
    {
      id: "com.example.alpha",
      name: "Alpha",
      version: "1.2.3",
      type: "service",
      loader: "subprocess",
      state: "running",
      restarts: 2,
      pid: 4242,
      memoryBytes: 52_428_800,
      lastExit: { reason: "crash", code: 1, signal: null, at: "2026-01-01T00:00:00.000Z" }
    },
    {
      id: "com.example.beta",
      name: "Beta",
      version: "0.1.0",
      type: "storage",
      loader: "inprocess",
      state: "stopped",
      restarts: 0,
      pid: null,
      memoryBytes: null,
      lastExit: null
    }
  ]
  const server = http.createServer((request, response) => {
    let body = ""
    request.setEncoding("utf8")
    request.on("data", (chunk: string) => {
      body += chunk
    })
    request.on("end", () => {
      const url = request.url ?? ""
      requests.push({ method: request.method ?? "", url, authorization: request.headers.authorization, body })
      const reply = (status: number, value: unknown) => {
        response.writeHead(status, { "content-type": "application/json" })
        response.end(JSON.stringify(value))
      }
      if (url === "/health") return reply(health.status, health.body)
      if (url === "/api/plugins") return reply(200, plugins)
      if (url === "/api/plugins/com.example.alpha") {
        return reply(200, {
          ...plugins[0],
          error: null,
          granted: ["storage:read"],
          dependencies: { "com.example.beta": "^0.1.0" },
          services: ["alpha"],
          routes: ["GET /api/v1/alpha"],
          health: { status: "degraded", details: "slow disk" }
        })
      }
      if (url === "/api/plugins/com.example.odd") return reply(200, { id: 1 })
      if (url.startsWith("/api/plugins/com.example.missing")) {
        return reply(404, {
          _tag: "PluginNotFound",
          pluginId: "com.example.missing",
          message: 'no plugin "com.example.missing" is installed on this node'
        })
      }
      if (url === "/api/plugins/com.example.alpha/stop") {
        return reply(200, {
          id: "com.example.alpha",
          operation: "stop",
          state: "stopped",
          done: true,
          error: null
        })
      }
      if (url === "/api/plugins/com.example.alpha/reload") {
        return reply(202, {
          id: "com.example.alpha",
          operation: "reload",
          state: "restarting",
          done: false,
          error: null
        })
      }
      if (url === "/api/plugins/com.example.beta/start") {
        return reply(200, {
          id: "com.example.beta",
          operation: "start",
          state: "failed",
          done: true,
          error: "MissingGrants: network:connect"
        })
      }
      if (url === "/api/services/alpha/echo") {
        if (request.headers.authorization !== "Bearer s3cret") {
          return reply(401, { _tag: "Unauthorized", message: "needs the token" })
        }
        return reply(200, { echoed: body === "" ? null : JSON.parse(body) })
      }
      if (url.startsWith("/api/services/")) {
        return reply(404, { _tag: "ServiceNotFound", service: "nope", message: 'no service named "nope"' })
      }
      reply(404, { _tag: "RouteNotFound", message: url })
    })
  })
  return {
    requests,
    plugins,
    setHealth: (status: number, body: unknown) => {
      health = { status, body }
    },
    resetHealth: () => {
      health = healthy
    },
    start: () =>
      new Promise<string>((resolve) =>
        server.listen(0, "127.0.0.1", () =>
          resolve(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`)
        )
      ),
    stop: () => new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

describe("against the admin API", { timeout: 120_000 }, () => {
  const api = standIn()
  let url = ""
  const dataDir = path.join(scratch, "data")
  beforeAll(async () => {
    url = await api.start()
    fs.mkdirSync(dataDir, { recursive: true })
    fs.writeFileSync(path.join(dataDir, "admin.token"), "s3cret\n", { mode: 0o600 })
  })
  afterAll(() => api.stop())

  it("status shows health and an aligned plugin table, or exactly the API's JSON", async () => {
    const human = await blackhole(["status", "--url", url])
    assert.strictEqual(human.code, 0, human.stderr)
    assert.include(human.stdout, "status   ok")
    assert.include(human.stdout, "12D3KooWStandIn")
    assert.include(human.stdout, "1h 02m")
    const lines = human.stdout.split("\n")
    const header = lines.find((line) => line.startsWith("ID"))
    const alpha = lines.find((line) => line.startsWith("com.example.alpha"))
    const beta = lines.find((line) => line.startsWith("com.example.beta"))
    assert.isDefined(header)
    assert.isDefined(alpha)
    assert.isDefined(beta)
    // Aligned: every column starts at the same offset in each row.
    assert.strictEqual(alpha?.indexOf("Alpha"), header?.indexOf("NAME"))
    assert.strictEqual(beta?.indexOf("storage"), header?.indexOf("TYPE"))
    assert.include(alpha, "50.0 MiB")
    noColour(human.stdout)

    const json = await blackhole(["status", "--url", url, "--json"])
    assert.strictEqual(json.code, 0)
    const parsed = JSON.parse(json.stdout)
    assert.deepStrictEqual(parsed.plugins, api.plugins)
    assert.strictEqual(parsed.health.nodeId, "12D3KooWStandIn")
  })

  it("status exits 1 when the node is degraded or still starting", async () => {
    api.setHealth(200, {
      status: "degraded",
      nodeId: "n",
      version: "0.1.0",
      uptimeSeconds: 1,
      plugins: { total: 2, running: 1, failed: 1, quarantined: 0 }
    })
    const degraded = await blackhole(["status", "--url", url])
    assert.strictEqual(degraded.code, 1)
    assert.include(degraded.stdout, "degraded")
    api.setHealth(503, { _tag: "NotReady", status: "starting", message: "the node is starting" })
    const starting = await blackhole(["status", "--url", url, "--json"])
    assert.strictEqual(starting.code, 1)
    assert.deepStrictEqual(JSON.parse(starting.stdout).health, {
      _tag: "NotReady",
      status: "starting",
      message: "the node is starting"
    })
    api.resetHealth()
  })

  it("plugin list and info print tables, or the API's JSON", async () => {
    const list = await blackhole(["plugin", "list", "--url", url, "--json"])
    assert.strictEqual(list.code, 0)
    assert.deepStrictEqual(JSON.parse(list.stdout), api.plugins)
    const table = await blackhole(["plugin", "list", "--url", url])
    assert.match(table.stdout, /^ID +NAME +VERSION +TYPE +LOADER +STATE +RESTARTS +PID +MEMORY$/m)

    const info = await blackhole(["plugin", "info", "com.example.alpha", "--url", url])
    assert.strictEqual(info.code, 0, info.stderr)
    assert.match(info.stdout, /^last exit +crash, code 1, at 2026-01-01T00:00:00.000Z$/m)
    assert.match(info.stdout, /^dependencies +com.example.beta \^0.1.0$/m)
    assert.match(info.stdout, /^routes +GET \/api\/v1\/alpha$/m)
    assert.match(info.stdout, /^health +degraded \(slow disk\)$/m)

    const missing = await blackhole(["plugin", "info", "com.example.missing", "--url", url])
    assert.strictEqual(missing.code, 1)
    assert.include(
      missing.stderr,
      'PluginNotFound: no plugin "com.example.missing" is installed on this node'
    )

    const odd = await blackhole(["plugin", "info", "com.example.odd", "--url", url])
    assert.strictEqual(odd.code, 1)
    assert.include(odd.stderr, "answered in a shape this CLI does not know")
    assert.match(odd.stderr, /^ {2}id: /m)
  })

  it("plugin stop/reload/start print the resulting state, and 202 as still in progress", async () => {
    const stop = await blackhole(["plugin", "stop", "com.example.alpha", "--url", url, "--data-dir", dataDir])
    assert.strictEqual(stop.code, 0, stop.stderr)
    assert.strictEqual(stop.stdout.trim(), "com.example.alpha: stopped")
    const reload = await blackhole([
      "plugin",
      "reload",
      "com.example.alpha",
      "--url",
      url,
      "--data-dir",
      dataDir
    ])
    assert.strictEqual(reload.code, 0, reload.stderr)
    assert.include(reload.stdout, "still in progress (state: restarting)")
    const start = await blackhole([
      "plugin",
      "start",
      "com.example.beta",
      "--url",
      url,
      "--data-dir",
      dataDir
    ])
    assert.strictEqual(start.code, 1)
    assert.include(start.stdout, "com.example.beta: failed")
    assert.include(start.stderr, "MissingGrants: network:connect")
    const posts = api.requests.filter((request) => request.method === "POST")
    assert.isTrue(posts.every((request) => request.authorization === "Bearer s3cret"))
  })

  it("call sends the token from the data dir and prints the JSON result", async () => {
    const result = await blackhole(["call", "alpha", "echo", '{"n":1}', "--url", url, "--data-dir", dataDir])
    assert.strictEqual(result.code, 0, result.stderr)
    assert.deepStrictEqual(JSON.parse(result.stdout), { echoed: { n: 1 } })
    const last = api.requests.at(-1)
    assert.strictEqual(last?.authorization, "Bearer s3cret")
    assert.strictEqual(last?.body, '{"n":1}')

    const noPayload = await blackhole([
      "call",
      "alpha",
      "echo",
      "--json",
      "--url",
      url,
      "--data-dir",
      dataDir
    ])
    assert.strictEqual(noPayload.stdout.trim(), '{"echoed":null}')
  })

  it("call prints `_tag: message` on an error and exits 1; 401 points at the token", async () => {
    const missing = await blackhole(["call", "nope", "x", "--url", url, "--data-dir", dataDir])
    assert.strictEqual(missing.code, 1)
    assert.include(missing.stderr, 'ServiceNotFound: no service named "nope"')
    const json = await blackhole(["call", "nope", "x", "--json", "--url", url, "--data-dir", dataDir])
    assert.strictEqual(JSON.parse(json.stdout)._tag, "ServiceNotFound")

    const noToken = await blackhole([
      "call",
      "alpha",
      "echo",
      "--url",
      url,
      "--data-dir",
      path.join(scratch, "empty")
    ])
    assert.strictEqual(noToken.code, 1)
    assert.include(noToken.stderr, "Unauthorized")
    assert.include(noToken.stderr, path.join(scratch, "empty", "admin.token"))
  })
})
