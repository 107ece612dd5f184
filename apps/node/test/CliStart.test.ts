/**
 * `blackhole` with no arguments starts the node, like `blackhole start` (what
 * `npm start` runs); the other commands, with no flags either, find it
 * through the same `./blackhole.yaml`. SIGINT stops it with exit code 0.
 */
import * as childProcess from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { assertBuilt, blackhole, cleanEnv, cleanup, freePort, main, tempDir, waitFor } from "./support/cli.js"

const scratch = tempDir("bh-cli-start-")
beforeAll(assertBuilt)
afterAll(() => cleanup(scratch))

describe("blackhole with no command", { timeout: 180_000 }, () => {
  it("starts the node from ./blackhole.yaml; status finds it; SIGINT stops it with exit 0", async () => {
    const port = await freePort()
    fs.writeFileSync(
      path.join(scratch, "blackhole.yaml"),
      [
        "node: { data_dir: data }",
        `http: { port: ${port} }`,
        "storage: { backend: memory }",
        "p2p: { enabled: false }",
        "plugins: { discovery: { enabled: false } }"
      ].join("\n")
    )
    const node = childProcess.spawn(process.execPath, [main], {
      cwd: scratch,
      env: cleanEnv({ NO_COLOR: "1" }),
      stdio: ["ignore", "pipe", "pipe"]
    })
    let output = ""
    node.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      output += chunk
    })
    node.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      output += chunk
    })
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      node.on("exit", (code, signal) => resolve({ code, signal }))
    )
    try {
      await waitFor("the node's /health", async () => {
        if (node.exitCode !== null) throw new Error(`the node exited with ${node.exitCode}:\n${output}`)
        const response = await fetch(`http://127.0.0.1:${port}/health`)
        return response.status === 200 ? true : undefined
      })
      const status = await blackhole(["status", "--json"], { cwd: scratch })
      assert.strictEqual(status.code, 0, status.stderr)
      assert.strictEqual(JSON.parse(status.stdout).health.status, "ok")
      assert.isTrue(fs.existsSync(path.join(scratch, "data", "identity.key")), "the data dir is the config's")
    } finally {
      node.kill("SIGINT")
    }
    const { code } = await exited
    assert.strictEqual(code, 0, output)
  })
})
