/**
 * End to end: two real `blackhole` processes over TCP on loopback, each with its own data dir and
 * the sync plugin discovered from packages/plugins/sync (running as a subprocess). The second one
 * bootstraps to the first's listen address; writes go through the storage service over HTTP. One
 * node is killed (SIGKILL), the other is written to, and the killed one, restarted on the same data
 * dir, catches up. Every process is stopped and the temp dir removed at the end.
 */
import * as childProcess from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { freePort, main, waitFor } from "./support/cli.js"

const syncDir = fileURLToPath(new URL("../../../packages/plugins/sync", import.meta.url))
const namespace = "shared"

/** A node process and what the test knows of it. */
interface Node {
  readonly name: string
  readonly url: string
  readonly process: childProcess.ChildProcess
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  output: string
}

const running = new Set<Node>()

/** Starts `blackhole start` on `dataDir` with a config syncing `shared`, bootstrapping to `bootstrap`. */
const start = async (name: string, root: string, bootstrap: ReadonlyArray<string>): Promise<Node> => {
  const port = await freePort()
  const configFile = path.join(root, `${name}.yaml`)
  fs.writeFileSync(
    configFile,
    [
      "http:",
      "  auth: none",
      "storage:",
      "  backend: sqlite",
      "p2p:",
      '  listen: ["/ip4/127.0.0.1/tcp/0"]',
      `  bootstrap: ${JSON.stringify(bootstrap)}`,
      "plugins:",
      "  discovery:",
      `    directories: [${JSON.stringify(syncDir)}]`,
      "  overrides:",
      "    dev.blackhole.sync:",
      "      config:",
      `        namespace: ${namespace}`,
      "        antiEntropyIntervalMillis: 1000",
      ""
    ].join("\n")
  )
  const child = childProcess.spawn(
    process.execPath,
    [main, "start", "--config", configFile, "--data-dir", path.join(root, name), "--port", String(port)],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1" } }
  )
  const node: Node = {
    name,
    url: `http://127.0.0.1:${port}`,
    process: child,
    exited: new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal }))),
    output: ""
  }
  running.add(node)
  void node.exited.then(() => running.delete(node))
  child.stdout?.on("data", (chunk) => {
    node.output += chunk
  })
  child.stderr?.on("data", (chunk) => {
    node.output += chunk
  })
  await waitFor(
    `${name} to run the sync plugin`,
    async () => {
      if (child.exitCode !== null) throw new Error(`${name} exited early:\n${node.output}`)
      const plugins = (await (await fetch(`${node.url}/api/plugins`)).json()) as Array<{
        id: string
        state: string
      }>
      return plugins.find((plugin) => plugin.id === "dev.blackhole.sync")?.state === "running"
        ? true
        : undefined
    },
    90_000
  )
  return node
}

const call = async (node: Node, service: string, method: string, payload: unknown) => {
  const response = await fetch(`${node.url}/api/services/${service}/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(payload)
  })
  const body: unknown = await response.json()
  if (response.status !== 200)
    throw new Error(`${node.name} ${service}.${method}: ${response.status} ${JSON.stringify(body)}`)
  return body
}

const put = (node: Node, key: string, value: string) =>
  call(node, "storage", "store", { namespace, key, value: Buffer.from(value).toString("base64") })

const remove = (node: Node, key: string) => call(node, "storage", "delete", { namespace, key })

/** The synced namespace of a node: key → value, sorted by key. */
const contents = async (node: Node) => {
  const keys = (await call(node, "storage", "list", { namespace, prefix: "" })) as Array<string>
  const entries: Array<[string, string]> = []
  for (const key of keys) {
    const value = (await call(node, "storage", "retrieve", { namespace, key })) as string | null
    if (value !== null) entries.push([key, Buffer.from(value, "base64").toString()])
  }
  return entries
}

const converged = (nodes: ReadonlyArray<Node>, expected: ReadonlyArray<[string, string]>, what: string) =>
  waitFor(what, async () => {
    for (const node of nodes) {
      if (JSON.stringify(await contents(node)) !== JSON.stringify(expected)) return undefined
    }
    return true
  })

const stop = async (node: Node, signal: NodeJS.Signals) => {
  if (node.process.exitCode === null && node.process.signalCode === null) node.process.kill(signal)
  return node.exited
}

describe("sync between two node processes over TCP (end to end)", () => {
  let root: string

  beforeAll(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), "blackhole-e2e-sync-"))
  })

  afterAll(async () => {
    await Promise.all(
      [...running].map(async (node) => {
        node.process.kill("SIGKILL")
        await node.exited
      })
    )
    fs.rmSync(root, { recursive: true, force: true })
  })

  it("two nodes find each other from bootstrap, converge, and a killed one catches up when restarted", async () => {
    const a = await start("a", root, [])
    const p2p = (await (await fetch(`${a.url}/api/p2p`)).json()) as { peerId: string; listen: Array<string> }
    const address = p2p.listen.find((entry) => entry.startsWith("/ip4/127.0.0.1/tcp/"))
    expect(address).toBeDefined()
    let b = await start("b", root, [address as string])

    await put(a, "from-a", "1")
    await put(b, "from-b", "2")
    await put(a, "doomed", "soon deleted")
    await converged(
      [a, b],
      [
        ["doomed", "soon deleted"],
        ["from-a", "1"],
        ["from-b", "2"]
      ],
      "the two nodes to converge"
    )
    const seen = (await (await fetch(`${b.url}/api/p2p`)).json()) as {
      peers: Array<{ peerId: string; protocols: Array<string> }>
    }
    expect(seen.peers.find((peer) => peer.peerId === p2p.peerId)?.protocols).toContain(
      "/blackhole/sync/1.0.0"
    )

    // b dies without a chance to say goodbye; a carries on.
    const killed = await stop(b, "SIGKILL")
    expect(killed.signal).toBe("SIGKILL")
    await put(a, "from-a", "changed while b was down")
    await remove(a, "doomed")
    await put(a, "new", "written while b was down")

    // b comes back on the same data dir (same node id, same storage) and catches up.
    b = await start("b", root, [address as string])
    await converged(
      [a, b],
      [
        ["from-a", "changed while b was down"],
        ["from-b", "2"],
        ["new", "written while b was down"]
      ],
      "the restarted node to catch up"
    )
    const status = (await call(b, "sync", "status", {})) as {
      peers: Array<{ peerId: string; connected: boolean }>
    }
    expect(status.peers.find((peer) => peer.peerId === p2p.peerId)?.connected).toBe(true)

    for (const node of [b, a]) {
      const exit = await stop(node, "SIGTERM")
      expect(exit.code, node.output.slice(-4000)).toBe(0)
    }
  }, 240_000)
})
