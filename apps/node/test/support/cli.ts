/**
 * Running the built `blackhole` executable as a real process, in a clean
 * environment: no `BLACKHOLE_*` or npm variables from the developer's shell,
 * no colours, and a working directory without a `blackhole.yaml`.
 */
import * as childProcess from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

/** The built entry point (`npx tsc -b` writes it). */
export const main = fileURLToPath(new URL("../../dist/main.js", import.meta.url))

/** Fails early, with the fix, when the CLI has not been built. */
export const assertBuilt = () => {
  if (!fs.existsSync(main)) throw new Error(`${main} does not exist: run \`npx tsc -b\` first`)
}

/** The environment minus what would leak the caller's setup into a test (npm's own config included). */
export const cleanEnv = (extra: Record<string, string> = {}): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined) continue
    if (/^(BLACKHOLE_|VITEST|npm_|NODE_OPTIONS$|INIT_CWD$|FORCE_COLOR$|NO_COLOR$)/.test(key)) continue
    env[key] = value
  }
  return { ...env, ...extra }
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: matching ANSI escape sequences is the point
const ANSI = /\u001b\[[0-9;]*m/g

/** Whether `text` has ANSI colour sequences. */
export const hasAnsi = (text: string): boolean => text.search(ANSI) !== -1

/** `text` without ANSI colour sequences. */
export const stripAnsi = (text: string): string => text.replace(ANSI, "")

/** What a finished process left. */
export interface Result {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs a command to completion. */
export const exec = (
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly env?: Record<string, string>; readonly timeoutMillis?: number }
): Promise<Result> =>
  new Promise((resolve, reject) => {
    const child = childProcess.spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? cleanEnv(),
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk
    })
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk
    })
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMillis ?? 60_000)
    child.on("error", reject)
    child.on("close", (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })

/** A scratch directory, removed by `cleanup`. */
export const tempDir = (prefix: string): string => fs.mkdtempSync(path.join(os.tmpdir(), prefix))

/** Runs `blackhole <args>` (in `cwd`, default a fresh empty directory). */
export const blackhole = (
  args: ReadonlyArray<string>,
  options: {
    readonly cwd?: string
    readonly env?: Record<string, string>
    readonly timeoutMillis?: number
  } = {}
): Promise<Result> =>
  exec(process.execPath, [main, ...args], {
    cwd: options.cwd ?? emptyCwd(),
    env: cleanEnv({ NO_COLOR: "1", ...options.env }),
    ...(options.timeoutMillis === undefined ? {} : { timeoutMillis: options.timeoutMillis })
  })

let sharedCwd: string | undefined
const emptyCwd = () => {
  if (sharedCwd === undefined || !fs.existsSync(sharedCwd)) sharedCwd = tempDir("bh-cli-cwd-")
  return sharedCwd
}

/** Removes the scratch directories a test file made (call from `afterAll`). */
export const cleanup = (...dirs: ReadonlyArray<string>) => {
  for (const dir of [...dirs, ...(sharedCwd === undefined ? [] : [sharedCwd])]) {
    fs.rmSync(dir, { recursive: true, force: true })
  }
  sharedCwd = undefined
}

/** A loopback port nothing listens on (right now). */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })

/** Polls `check` every 100 ms until it returns a value; fails with `what` (and the last error) after the timeout. */
export const waitFor = async <A>(
  what: string,
  check: () => Promise<A | undefined>,
  timeoutMillis = 60_000
): Promise<A> => {
  const deadline = Date.now() + timeoutMillis
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const value = await check()
      if (value !== undefined) return value
    } catch (error) {
      last = error
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`timed out waiting for ${what}${last === undefined ? "" : `: ${String(last)}`}`)
}

/** Whether a process is alive (a zombie awaiting its reaper counts as gone). */
export const isAlive = (pid: number): boolean => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z"
  } catch {
    return false
  }
}
