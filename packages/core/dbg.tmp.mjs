import * as cp from "node:child_process"
import * as Framing from "@blackhole/sdk/Framing"
const child = cp.spawn(process.execPath, ["node_modules/@blackhole/sdk/dist/runtime.js"], { stdio: ["ignore", "inherit", "inherit", "pipe"], env: { BLACKHOLE_PLUGIN_ID: "com.example.echo", BLACKHOLE_PLUGIN_MAIN: "/work/main/packages/core/test/fixtures/plugins/echo/index.mjs", BLACKHOLE_PLUGIN_SECRET: "s" } })
const sock = child.stdio[3]
const dec = new Framing.Decoder()
let pending = null
let id = 100
const call = () => new Promise((res) => { pending = res; sock.write(Framing.encode(1, { _tag: "Request", id: String(id++), tag: "Invoke", payload: { service: "echo", method: "echo", payload: { text: "x" } }, headers: [] })) })
sock.on("data", async (c) => { for (const f of dec.push(c)) {
  if (f.kind === 0) { sock.write(Framing.encode(0, { type: "welcome", version: 1 })); sock.write(Framing.encode(1, { _tag: "Request", id: "1", tag: "Start", payload: { config: {}, nodeInfo: { nodeId: "x", version: "0.1.0", environment: "test" } }, headers: [] })) }
  else if (f.kind === 1 && f.body.tag === "Subscribe") { sock.write(Framing.encode(2, { _tag: "Chunk", requestId: f.body.id, values: [{ id: "m", type: "blackhole.subscribed", source: "core", timestamp: 0, data: null }] })) }
  else if (f.kind === 2 && f.body.requestId === "1") { console.log("started"); setTimeout(async () => { for (let r = 0; r < 8; r++) { const t = performance.now(); for (let i = 0; i < 500; i++) await call(); console.log("raw-host rtt us", ((performance.now() - t) * 1000 / 500).toFixed(1)) } sock.end(); setTimeout(() => process.exit(0), 1500) }, 100) }
  else if (f.kind === 2 && pending) { const p = pending; pending = null; p(f.body) }
  else if (f.kind === 1) { /* acks */ }
} })
