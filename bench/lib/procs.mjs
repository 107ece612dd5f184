// Child processes the benchmarks start themselves (raw baselines, bare nodes, Moleculer), each
// tracked until it has exited: `reapAll()` in a finally block kills (SIGKILL) and waits for every
// one still running. Plugin processes are not here: their node's loader owns and reaps them.
import * as childProcess from "node:child_process"
import * as path from "node:path"
import { fixture } from "./node.mjs"

const live = new Set()

/** Node's permission-model flag on this Node (20: experimental). */
export const permissionFlag =
  Number(process.versions.node.split(".")[0]) >= 22 ? "--permission" : "--experimental-permission"

/**
 * The same restriction the SubprocessLoader puts on a plugin ("permission" sandbox): the
 * permission model, reads limited to `readable`, no writes, children or workers.
 */
export const sandboxFlags = (readable) => [
  permissionFlag,
  "--disable-warning=ExperimentalWarning",
  ...readable.map((dir) => `--allow-fs-read=${dir}`)
]

/** Spawns a tracked child; `exited` resolves with `{ code, signal }` once it is gone. */
export const spawnTracked = (command, args, options = {}) => {
  const child = childProcess.spawn(command, args, options)
  return track(child)
}

/** `child_process.fork`, tracked. */
export const forkTracked = (module, args, options = {}) => track(childProcess.fork(module, args, options))

const track = (child) => {
  live.add(child)
  const exited = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      live.delete(child)
      resolve({ code, signal })
    })
    child.once("error", (error) => {
      // A spawn that failed never emits exit.
      if (child.pid === undefined) {
        live.delete(child)
        resolve({ code: null, signal: null, error })
      }
    })
  })
  return { child, exited }
}

/** Kills a tracked child (SIGKILL unless it already exited) and waits until it is reaped. */
export const reap = async ({ child, exited }) => {
  if (child.exitCode === null && child.signalCode === null) {
    try {
      child.kill("SIGKILL")
    } catch {
      // Already gone.
    }
  }
  await exited
}

/** Kills and reaps every tracked child still running. */
export const reapAll = async () => {
  const children = Array.from(live)
  for (const child of children) {
    try {
      child.kill("SIGKILL")
    } catch {
      // Already gone.
    }
  }
  await Promise.all(
    children.map(
      (child) =>
        new Promise((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) resolve()
          else child.once("exit", () => resolve())
        })
    )
  )
  for (const child of children) live.delete(child)
}

const CALL = 4
const REPLY = 5

/** One frame in Blackhole's framing: u32 BE length (kind + body) | u8 kind | JSON body. */
export const encodeFrame = (kind, value) => {
  const json = JSON.stringify(value)
  const length = Buffer.byteLength(json)
  const out = Buffer.allocUnsafe(5 + length)
  out.writeUInt32BE(length + 1, 0)
  out.writeUInt8(kind, 4)
  out.write(json, 5, "utf8")
  return out
}

/**
 * The raw echo peer: `bench/fixtures/raw-echo.mjs` in a child whose fd 3 is an extra stdio pipe
 * (the channel kind the SubprocessLoader uses), under the same permission sandbox. `call(text)`
 * sends a Call frame `[id, service, method, { text }]` and resolves with the Reply's value.
 */
export const startRawEcho = async (service = "benchecho") => {
  const script = fixture("raw-echo.mjs")
  const proc = spawnTracked(process.execPath, [...sandboxFlags([path.dirname(script)]), script], {
    stdio: ["ignore", "inherit", "inherit", "pipe"]
  })
  const socket = proc.child.stdio[3]
  const waiting = new Map()
  let nextId = 0
  let pending = Buffer.alloc(0)
  socket.on("data", (chunk) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
    let offset = 0
    while (pending.length - offset >= 5) {
      const length = pending.readUInt32BE(offset)
      if (pending.length - offset < 4 + length) break
      const kind = pending.readUInt8(offset + 4)
      const body = JSON.parse(pending.toString("utf8", offset + 5, offset + 4 + length))
      offset += 4 + length
      if (kind !== REPLY) continue
      const resolve = waiting.get(body[0])
      waiting.delete(body[0])
      resolve?.(body[2])
    }
    pending = pending.subarray(offset)
  })
  socket.on("error", () => {})
  const call = (text) =>
    new Promise((resolve) => {
      const id = ++nextId
      waiting.set(id, resolve)
      socket.write(encodeFrame(CALL, [id, service, "echo", { text }]))
    })
  if ((await call("ready")) !== "ready") throw new Error("raw echo: bad answer")
  return {
    pid: proc.child.pid,
    call,
    close: async () => {
      socket.destroy()
      await reap(proc)
    }
  }
}

/**
 * Raw fork IPC peer: `bench/fixtures/fork-echo.mjs` via child_process.fork (Node's IPC channel,
 * JSON serialisation), same sandbox, the same `[id, service, method, { text }]` messages.
 */
export const startForkEcho = async (service = "benchecho") => {
  const script = fixture("fork-echo.mjs")
  const proc = forkTracked(script, [], {
    execArgv: sandboxFlags([path.dirname(script)]),
    stdio: ["ignore", "inherit", "inherit", "ipc"]
  })
  const waiting = new Map()
  let nextId = 0
  proc.child.on("message", (message) => {
    const resolve = waiting.get(message[0])
    waiting.delete(message[0])
    resolve?.(message[2])
  })
  const call = (text) =>
    new Promise((resolve) => {
      const id = ++nextId
      waiting.set(id, resolve)
      proc.child.send([id, service, "echo", { text }])
    })
  if ((await call("ready")) !== "ready") throw new Error("fork echo: bad answer")
  return {
    pid: proc.child.pid,
    call,
    close: async () => {
      if (proc.child.connected) proc.child.disconnect()
      await reap(proc)
    }
  }
}
