/**
 * End to end: the built `blackhole` executable as a real process, on a free
 * loopback port with a temp data dir and token auth, running the first-party
 * plugins as subprocesses. Every test here talks to it over real HTTP or runs
 * the CLI against it; the process is stopped with SIGTERM at the end and must
 * exit 0 leaving no plugin process behind.
 */
import * as childProcess from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { blackhole, cleanup, freePort, isAlive, main, waitFor } from "./support/cli.js"

const pluginsDir = fileURLToPath(new URL("../../../packages/plugins", import.meta.url))

/** Parses Prometheus text exposition strictly enough to catch a broken family. */
const parsePrometheus = (text: string) => {
  const help = new Set<string>()
  const type = new Map<string, string>()
  const samples: Array<{ name: string; labels: string; value: number }> = []
  for (const line of text.split("\n")) {
    if (line === "") continue
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line)
    if (meta !== null) {
      if (meta[1] === "HELP") help.add(meta[2] as string)
      else type.set(meta[2] as string, meta[3] as string)
      continue
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line)
    if (sample === null) throw new Error(`not a Prometheus line: ${line}`)
    const name = sample[1] as string
    const family = [name, name.replace(/_(bucket|sum|count)$/, "")].find((n) => type.has(n))
    if (family === undefined || !help.has(family)) throw new Error(`sample of ${name} without HELP/TYPE`)
    const value = Number(sample[3] === "+Inf" ? Number.POSITIVE_INFINITY : sample[3])
    if (Number.isNaN(value) && sample[3] !== "NaN") throw new Error(`bad value in: ${line}`)
    samples.push({ name, labels: sample[2] ?? "", value })
  }
  return { type, samples }
}

describe("blackhole node (end to end)", () => {
  let dir: string
  let port: number
  let url: string
  let token: string
  let node: childProcess.ChildProcess
  let output = ""
  let exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>

  const api = (pathname: string, init: RequestInit & { auth?: boolean } = {}) =>
    fetch(`${url}${pathname}`, {
      ...init,
      headers: {
        ...(init.auth === false ? {} : { authorization: `Bearer ${token}` }),
        ...(init.body === undefined ? {} : { "content-type": "application/json" }),
        ...(init.headers as Record<string, string> | undefined)
      }
    })

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "blackhole-e2e-"))
    port = await freePort()
    url = `http://127.0.0.1:${port}`
    fs.writeFileSync(
      path.join(dir, "blackhole.yaml"),
      [
        "http:",
        "  auth: token",
        "storage:",
        "  backend: sqlite",
        "p2p:",
        "  enabled: false",
        "plugins:",
        "  discovery:",
        `    directories: [${JSON.stringify(pluginsDir)}]`,
        "  restart:",
        "    initial_delay_millis: 100",
        ""
      ].join("\n")
    )
    node = childProcess.spawn(
      process.execPath,
      [
        main,
        "start",
        "--config",
        path.join(dir, "blackhole.yaml"),
        "--data-dir",
        path.join(dir, "data"),
        "--port",
        String(port)
      ],
      // Traces to the console exporter, so one test can follow a request across the node and a plugin.
      {
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, NO_COLOR: "1", OTEL_TRACES_EXPORTER: "console" }
      }
    )
    node.stdout?.on("data", (chunk) => {
      output += chunk
    })
    node.stderr?.on("data", (chunk) => {
      output += chunk
    })
    exited = new Promise((resolve) => node.once("exit", (code, signal) => resolve({ code, signal })))
    await waitFor(
      "the node to become healthy",
      async () => {
        if (node.exitCode !== null) throw new Error(`the node exited early:\n${output}`)
        const response = await fetch(`${url}/health`)
        return response.status === 200 ? true : undefined
      },
      90_000
    )
    token = fs.readFileSync(path.join(dir, "data", "admin.token"), "utf8").trim()
  }, 120_000)

  afterAll(async () => {
    if (node !== undefined && node.exitCode === null) node.kill("SIGKILL")
    // Also the empty working directory `blackhole(...)` runs the CLI in.
    cleanup(dir)
  })

  it("reports health with the node id and plugin counts", async () => {
    const response = await fetch(`${url}/health`)
    expect(response.status).toBe(200)
    const body = (await response.json()) as { status: string; nodeId: string; plugins: { running: number } }
    expect(body.status).toBe("ok")
    expect(body.nodeId).toMatch(/^12D3KooW/)
    expect(body.plugins.running).toBeGreaterThan(0)
  })

  it("keeps the admin token private", () => {
    const mode = fs.statSync(path.join(dir, "data", "admin.token")).mode & 0o777
    expect(mode).toBe(0o600)
  })

  it("lists plugins in the documented shape, subprocess ones with a pid", async () => {
    const plugins = (await (await fetch(`${url}/api/plugins`)).json()) as Array<Record<string, unknown>>
    const analytics = plugins.find((p) => p.id === "dev.blackhole.analytics")
    expect(analytics).toMatchObject({
      loader: "subprocess",
      state: "running",
      type: "service",
      lastExit: null
    })
    expect(typeof analytics?.pid).toBe("number")
    expect(Object.keys(analytics ?? {}).sort()).toEqual(
      [
        "id",
        "name",
        "version",
        "type",
        "loader",
        "state",
        "restarts",
        "pid",
        "memoryBytes",
        "lastExit"
      ].sort()
    )
    const missing = await fetch(`${url}/api/plugins/no.such.plugin`)
    expect(missing.status).toBe(404)
    expect(((await missing.json()) as { _tag: string })._tag).toBe("PluginNotFound")
  })

  it("serves Prometheus metrics with HELP and TYPE for every family", async () => {
    // One mesh call first, so the call families have samples.
    await api("/api/services/node/info", { method: "POST", body: "{}" })
    const response = await fetch(`${url}/metrics`)
    expect(response.headers.get("content-type")).toMatch(/^text\/plain/)
    const { type, samples } = parsePrometheus(await response.text())
    for (const family of [
      "plugin_operations_total",
      "plugin_restarts_total",
      "plugin_state",
      "plugin_memory_bytes",
      "event_bus_published_total",
      "event_bus_dropped_total",
      "mesh_call_duration_seconds"
    ]) {
      expect(type.has(family), family).toBe(true)
    }
    expect(type.get("mesh_call_duration_seconds")).toBe("histogram")
    expect(
      samples.some((s) => s.name === "plugin_state" && s.labels.includes('state="running"') && s.value === 1)
    ).toBe(true)
    expect(
      samples.some((s) => s.name === "plugin_operations_total" && s.labels.includes('operation="node.info"'))
    ).toBe(true)
  })

  it("serves a plugin's own HTTP route under /api/v1", async () => {
    const response = await fetch(`${url}/api/v1/analytics`)
    expect(response.status).toBe(200)
    const body = (await response.json()) as { total: number }
    expect(typeof body.total).toBe("number")
    expect((await fetch(`${url}/api/v1/nothing-here`)).status).toBe(404)
  })

  it("calls the mesh over HTTP as the operator, with typed errors and status codes", async () => {
    const ok = await api("/api/services/node/info", { method: "POST", body: "{}" })
    expect(ok.status).toBe(200)
    expect(((await ok.json()) as { version: string }).version).toBe("0.1.0")
    const unknown = await api("/api/services/nope/info", { method: "POST", body: "{}" })
    expect(unknown.status).toBe(404)
    expect(((await unknown.json()) as { _tag: string })._tag).toBe("ServiceNotFound")
    const bad = await api("/api/services/storage/retrieve", { method: "POST", body: '{"namespace":1}' })
    expect(bad.status).toBe(400)
    expect(((await bad.json()) as { _tag: string })._tag).toBe("InvalidPayload")
    const notJson = await api("/api/services/node/info", { method: "POST", body: "{not json" })
    expect(notJson.status).toBe(400)
  })

  it("traces one HTTP request through the mesh to a subprocess plugin and back, in one trace", async () => {
    const response = await api("/api/services/analytics/getStats", { method: "POST", body: "{}" })
    expect(response.status).toBe(200)
    const spans = () =>
      Array.from(output.matchAll(/traceId: '([0-9a-f]+)',[\s\S]*?name: '([^']+)'/g), (m) => ({
        traceId: m[1] as string,
        name: m[2] as string
      }))
    const plugin = await waitFor(
      "the plugin call's span",
      async () => spans().find((s) => s.name === "plugin dev.blackhole.analytics analytics.getStats"),
      15_000
    )
    const trace = spans()
      .filter((s) => s.traceId === plugin.traceId)
      .map((s) => s.name)
    expect(trace).toContain("mesh analytics.getStats")
    expect(trace).toContain("http.server POST")
  })

  it("refuses mutating requests without the token (401) and logs them", async () => {
    const call = await api("/api/services/node/info", { method: "POST", body: "{}", auth: false })
    expect(call.status).toBe(401)
    const reload = await api("/api/plugins/dev.blackhole.analytics/reload", { method: "POST", auth: false })
    expect(reload.status).toBe(401)
    const events = await api("/api/events", { auth: false })
    expect(events.status).toBe(401)
    await waitFor(
      "the refusal in the log",
      async () => (output.includes("refused POST") ? true : undefined),
      10_000
    )
  })

  it("calls the mesh through the CLI, with the token from the data dir", async () => {
    const result = await blackhole([
      "call",
      "node",
      "info",
      "{}",
      "--url",
      url,
      "--data-dir",
      path.join(dir, "data"),
      "--json"
    ])
    expect(result.code, result.stderr).toBe(0)
    expect((JSON.parse(result.stdout) as { version: string }).version).toBe("0.1.0")
    const failed = await blackhole([
      "call",
      "nope",
      "info",
      "--url",
      url,
      "--data-dir",
      path.join(dir, "data")
    ])
    expect(failed.code).toBe(1)
    expect(failed.stderr).toContain("ServiceNotFound")
  })

  it("operates plugins through the CLI: log level, sync, profile (debug mode only)", async () => {
    const remote = ["--url", url, "--data-dir", path.join(dir, "data")]
    const level = await blackhole(["plugin", "log-level", "dev.blackhole.analytics", "warn", ...remote])
    expect(level.code, level.stderr).toBe(0)
    expect(level.stdout).toContain("log level warn")
    const notIntegration = await blackhole(["plugin", "sync", "dev.blackhole.analytics", ...remote])
    expect(notIntegration.code).toBe(1)
    expect(notIntegration.stdout + notIntegration.stderr).toContain("not an integration plugin")
    const profile = await blackhole([
      "plugin",
      "profile",
      "dev.blackhole.analytics",
      "--seconds",
      "1",
      ...remote
    ])
    expect(profile.code).toBe(1)
    expect(profile.stdout + profile.stderr).toContain("debug_mode")
    const badSeconds = await blackhole([
      "plugin",
      "profile",
      "dev.blackhole.analytics",
      "--seconds",
      "0",
      ...remote
    ])
    expect(badSeconds.code).toBe(2)
    await blackhole(["plugin", "log-level", "dev.blackhole.analytics", "debug", ...remote])
  })

  it("reloads a subprocess plugin: a new process, running again", async () => {
    const before = (await (await fetch(`${url}/api/plugins/dev.blackhole.analytics`)).json()) as {
      pid: number
    }
    const response = await api("/api/plugins/dev.blackhole.analytics/reload", { method: "POST" })
    expect(response.status).toBe(200)
    const result = (await response.json()) as { state: string; done: boolean }
    expect(result).toMatchObject({ state: "running", done: true })
    const after = (await (await fetch(`${url}/api/plugins/dev.blackhole.analytics`)).json()) as {
      pid: number
    }
    expect(after.pid).not.toBe(before.pid)
    await waitFor("the old process to be gone", async () => (isAlive(before.pid) ? undefined : true), 10_000)
  })

  it("streams bus events as server-sent events", async () => {
    const controller = new AbortController()
    const response = await api("/api/events?pattern=plugin.*", { signal: controller.signal })
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/)
    const reader = response.body!.getReader()
    await api("/api/plugins/dev.blackhole.analytics/reload", { method: "POST" })
    let text = ""
    await waitFor(
      "a plugin event on the stream",
      async () => {
        const { value } = await reader.read()
        text += new TextDecoder().decode(value)
        return text.includes("event: plugin.running") ? true : undefined
      },
      20_000
    )
    controller.abort()
  })

  it("stops gracefully on SIGTERM: exit 0, no plugin process left", async () => {
    const plugins = (await (await fetch(`${url}/api/plugins`)).json()) as Array<{ pid: number | null }>
    const pids = plugins.flatMap((p) => (p.pid === null ? [] : [p.pid]))
    expect(pids.length).toBeGreaterThan(0)
    node.kill("SIGTERM")
    const { code } = await exited
    expect(code, output).toBe(0)
    for (const pid of pids) expect(isAlive(pid), `plugin process ${pid}`).toBe(false)
  }, 60_000)
})

describe("blackhole start with a bad config", () => {
  it("exits 1 naming the file, the path and the problem", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "blackhole-e2e-bad-"))
    try {
      const file = path.join(dir, "blackhole.yaml")
      fs.writeFileSync(file, "http:\n  port: seventy\nplugins:\n  discovery:\n    enabeld: true\n")
      const result = await blackhole(["start", "--config", file, "--data-dir", path.join(dir, "data")])
      expect(result.code).toBe(1)
      const text = result.stdout + result.stderr
      expect(text).toContain(file)
      expect(text).toContain("http.port")
      expect(text).toContain("plugins.discovery.enabeld")
    } finally {
      cleanup(dir)
    }
  })
})
