import * as childProcess from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"
import * as readline from "node:readline"
import type { Duplex } from "node:stream"
import {
  InvalidPayload,
  Issue,
  type MeshError,
  PluginFailure,
  PluginUnavailable
} from "@blackhole/sdk/Errors"
import { Event } from "@blackhole/sdk/Event"
import { Events } from "@blackhole/sdk/Events"
import * as Framing from "@blackhole/sdk/Framing"
import * as Hooks from "@blackhole/sdk/Hooks"
import * as HostCalls from "@blackhole/sdk/HostCalls"
import * as HttpEndpoint from "@blackhole/sdk/HttpEndpoint"
import { NodeInfo } from "@blackhole/sdk/NodeInfo"
import { Capacity, type ContextServices, StorageFailure } from "@blackhole/sdk/Plugin"
import * as PluginChannel from "@blackhole/sdk/PluginChannel"
import { PluginConfig } from "@blackhole/sdk/PluginConfig"
import { PluginLogger } from "@blackhole/sdk/PluginLogger"
import * as PluginManifest from "@blackhole/sdk/PluginManifest"
import * as PluginProtocol from "@blackhole/sdk/PluginProtocol"
import * as PluginRuntime from "@blackhole/sdk/PluginRuntime"
import { PluginStorage } from "@blackhole/sdk/PluginStorage"
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
import { Services } from "@blackhole/sdk/Services"
import * as Headers from "@effect/platform/Headers"
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcClient from "@effect/rpc/RpcClient"
import type * as RpcClientError from "@effect/rpc/RpcClientError"
import * as RpcClientErrorModule from "@effect/rpc/RpcClientError"
import type * as RpcGroup from "@effect/rpc/RpcGroup"
import * as RpcGroupModule from "@effect/rpc/RpcGroup"
import * as RpcServer from "@effect/rpc/RpcServer"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Queue from "effect/Queue"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as ConfigSchemaFile from "../ConfigSchemaFile.js"
import * as MeshTracing from "../MeshTracing.js"
import type * as PluginLoaderModule from "../PluginLoader.js"
import type { LoadContext, LoadedPlugin, PluginLoader } from "../PluginLoader.js"
import type { LastExit } from "../PluginManager.js"
import * as Profiling from "../Profiling.js"
import type { DirectDispatch } from "../ServiceRegistry.js"
import type { SubprocessOptions } from "../SubprocessLoader.js"

type PluginClient = RpcClient.RpcClient<
  RpcGroup.Rpcs<typeof PluginProtocol.HostToPlugin>,
  RpcClientError.RpcClientError
>

// createRequire rather than import.meta.resolve: the latter is missing under some loaders (vitest).
const runtimeEntry = createRequire(import.meta.url).resolve("@blackhole/sdk/runtime")

/** `setpriv --pdeathsig KILL` makes the kernel kill the child when the host dies, even mid busy-loop. */
const setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].find((candidate) => fs.existsSync(candidate))

/** Only what a plugin needs from the host's environment: no secrets, no NODE_OPTIONS. */
const scrubbedEnv = (extra: Record<string, string>): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const name of ["PATH", "LANG", "TZ", "NODE_ENV", "TMPDIR"]) {
    const value = process.env[name]
    if (value !== undefined) env[name] = value
  }
  return { ...env, ...extra }
}

/** Memory from `/proc/<pid>/status` (VmRSS), in bytes; null once the process is gone. */
const readRss = (pid: number): number | null => {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8")
    const match = /VmRSS:\s+(\d+)\s+kB/.exec(status)
    return match === null ? null : Number(match[1]) * 1024
  } catch {
    return null
  }
}

/** Open socket descriptors beyond the stdio pipes (which Node makes from socket pairs). */
const countSockets = (pid: number): number | null => {
  try {
    let sockets = 0
    for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
      if (Number(fd) <= PluginRuntime.channelFd) continue
      try {
        if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith("socket:")) sockets++
      } catch {
        // The descriptor closed while we looked.
      }
    }
    return sockets
  } catch {
    return null
  }
}

const realpath = (file: string): string => {
  try {
    return fs.realpathSync(file)
  } catch {
    return path.resolve(file)
  }
}

/** Every `node_modules` directory module resolution may visit from `directory` upwards. */
const nodeModulesAbove = (directory: string): Array<string> => {
  const found: Array<string> = []
  for (let dir = directory; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, "node_modules")
    if (fs.existsSync(candidate)) found.push(realpath(candidate))
    if (path.dirname(dir) === dir) return found
  }
}

/** The runtime's own package (the SDK), resolved through workspace symlinks as the ESM loader does. */
const runtimePackage = realpath(path.dirname(path.dirname(runtimeEntry)))
const permissionFlag =
  Number(process.versions.node.split(".")[0]) >= 22 ? "--permission" : "--experimental-permission"

/** Node's permission model flags for one plugin (Node 20 wants one `--allow-fs-*` per path). */
const permissionFlags = (options: {
  readonly pluginDirectory: string
  readonly dataDirectory: string | undefined
  readonly granted: ReadonlyArray<string>
}): Array<string> => {
  const { reads, writes } = fileAccess(options)
  return [
    permissionFlag,
    "--disable-warning=ExperimentalWarning",
    ...Array.from(reads, (dir) => `--allow-fs-read=${dir}`),
    ...Array.from(writes, (dir) => `--allow-fs-write=${dir}`)
  ]
}

const bwrap = ["/usr/bin/bwrap", "/bin/bwrap"].find((candidate) => fs.existsSync(candidate))

/** Everything a plugin process may read, and write, given its directory, data directory and grants. */
const fileAccess = (options: {
  readonly pluginDirectory: string
  readonly dataDirectory: string | undefined
  readonly granted: ReadonlyArray<string>
}) => {
  const pluginDirectory = realpath(options.pluginDirectory)
  const reads = new Set([
    pluginDirectory,
    runtimePackage,
    ...nodeModulesAbove(pluginDirectory),
    ...nodeModulesAbove(runtimePackage)
  ])
  const writes = new Set<string>()
  if (options.dataDirectory !== undefined) {
    reads.add(realpath(options.dataDirectory))
    writes.add(realpath(options.dataDirectory))
  }
  for (const permission of options.granted) {
    const match = /^fs:(read|write|\*):(\/.*)$/.exec(permission)
    if (match === null) continue
    const target = realpath(match[2]!)
    reads.add(target)
    if (match[1] !== "read") writes.add(target)
  }
  return { pluginDirectory, reads, writes }
}

/** bubblewrap: a fresh mount, pid, ipc, uts and (unless `network:*` is granted) network namespace. */
const bubblewrapArgs = (options: {
  readonly pluginDirectory: string
  readonly dataDirectory: string | undefined
  readonly granted: ReadonlyArray<string>
  readonly node: ReadonlyArray<string>
}): Array<string> => {
  if (bwrap === undefined) throw new Error('isolation "bubblewrap" needs bwrap (Debian package bubblewrap)')
  const { pluginDirectory, reads, writes } = fileAccess(options)
  const network = options.granted.some((permission) => permission.startsWith("network:"))
  const system = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc/ssl", "/etc/ca-certificates"].filter(
    (dir) => fs.existsSync(dir)
  )
  const binary = realpath(process.execPath)
  return [
    bwrap,
    "--die-with-parent",
    "--unshare-all",
    ...(network ? ["--share-net"] : []),
    ...system.flatMap((dir) => ["--ro-bind", dir, dir]),
    ...(binary.startsWith("/usr/") ? [] : ["--ro-bind", binary, binary]),
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "--tmpfs",
    "/tmp",
    ...Array.from(reads)
      .filter((dir) => !writes.has(dir) && fs.existsSync(dir))
      .flatMap((dir) => ["--ro-bind", dir, dir]),
    ...Array.from(writes)
      .filter((dir) => fs.existsSync(dir))
      .flatMap((dir) => ["--bind", dir, dir]),
    "--chdir",
    pluginDirectory,
    "--",
    ...options.node
  ]
}

/** Under bubblewrap the host's child is bwrap: memory and sockets are sampled on the node inside it. */
const findNodeProcess = (pid: number): number => {
  const binary = realpath(process.execPath)
  const queue = [pid]
  while (queue.length > 0) {
    const current = queue.shift()!
    try {
      if (fs.readlinkSync(`/proc/${current}/exe`) === binary) return current
    } catch {
      // Gone, or not ours to look at.
    }
    try {
      for (const child of fs
        .readFileSync(`/proc/${current}/task/${current}/children`, "utf8")
        .trim()
        .split(/\s+/)) {
        if (child !== "") queue.push(Number(child))
      }
    } catch {
      // No children listed.
    }
  }
  return pid
}

/** A contract with the shape the plugin reported: the host checks access classes, the plugin checks payloads. */
const shapeContract = (service: typeof PluginProtocol.ServedService.Type): ServiceContract.Any => {
  const rpcs = service.methods.map((method) => {
    const rpc = Rpc.make(method.tag, { payload: Schema.Unknown, success: Schema.Unknown })
    return method.access === "read"
      ? ServiceContract.read(rpc)
      : method.access === "write"
        ? ServiceContract.write(rpc)
        : ServiceContract.admin(rpc)
  })
  return ServiceContract.make(service.name, RpcGroupModule.make(...rpcs))
}

/**
 * The V8 flags a plugin's process starts with: a heap cap a little under its RSS limit, so V8 fails
 * with OOM before the sampler has to kill. (A bundle's code cache is only accepted under the V8
 * flags it was made with: scripts/bundle-plugins.mjs makes it with these.)
 */
export const v8Flags = (manifest: PluginManifest.PluginManifest): ReadonlyArray<string> => {
  const { maxMemoryBytes } = PluginManifest.resourceLimits(manifest)
  return maxMemoryBytes === undefined
    ? []
    : [`--max-old-space-size=${Math.max(16, Math.floor((maxMemoryBytes * 0.75) / 1048576))}`]
}

const decodeCallError = Schema.decodeUnknownEither(PluginRuntime.CallError)

type CallExit = Exit.Exit<unknown, MeshError | ServiceContract.MethodError>

/** A call waiting for its Reply frame. */
interface PendingCall {
  readonly deadline: number
  readonly service: string
  readonly method: string
  readonly done: (exit: CallExit) => void
}

/**
 * The host's side of the Call/Reply frames of one plugin: ids, the calls in flight and their
 * deadline. Every call gets the same timeout, so the calls in flight, kept in the order they were
 * made (a Map's), are also in deadline order: one timer, armed for the oldest, bounds them all
 * (a timer per call costs more than the call's own bookkeeping).
 */
const directCalls = (channel: PluginChannel.Channel, pluginId: string, callTimeout: number) => {
  let nextCall = 0
  const pending = new Map<number, PendingCall>()
  let timer: ReturnType<typeof setTimeout> | undefined
  const gone = () =>
    Exit.fail(new PluginUnavailable({ pluginId, state: "stopped", reason: "the plugin process is gone" }))

  const expire = () => {
    timer = undefined
    const now = performance.now()
    for (const [id, call] of pending) {
      if (call.deadline > now) {
        timer = setTimeout(expire, call.deadline - now)
        return
      }
      pending.delete(id)
      channel.send(Framing.Kind.Cancel, [id])
      call.done(
        Exit.fail(
          new PluginUnavailable({
            pluginId,
            state: "running",
            reason: `${call.service}.${call.method} did not answer within ${callTimeout} ms`
          })
        )
      )
    }
  }

  channel.onFrame(Framing.Kind.Reply, (body) => {
    const [id, outcome, value] = body as [number, 0 | 1 | 2, unknown]
    const call = pending.get(id)
    if (call === undefined) return
    pending.delete(id)
    if (outcome === 0) return call.done(Exit.succeed(value))
    if (outcome === 2) return call.done(Exit.fail(new PluginFailure({ pluginId, reason: String(value) })))
    const error = decodeCallError(value)
    call.done(
      Exit.fail(
        Either.isRight(error)
          ? error.right
          : new PluginFailure({ pluginId, reason: "undecodable error from plugin" })
      )
    )
  })
  // Synchronously when the channel closes: a fiber in the plugin's Scope would already be gone by then.
  channel.onClose(() => {
    if (timer !== undefined) clearTimeout(timer)
    timer = undefined
    const failed = Array.from(pending.values())
    pending.clear()
    for (const call of failed) call.done(gone())
  })

  const call = (service: string, method: string, payload: unknown, done: (exit: CallExit) => void) => {
    if (!channel.isOpen()) {
      done(gone())
      return noCancel
    }
    const id = ++nextCall
    // No payload is sent as a shorter frame: JSON would turn `undefined` into `null`, which a
    // plugin could then tell apart from the in-process call.
    const sent = channel.send(
      Framing.Kind.Call,
      payload === undefined ? [id, service, method] : [id, service, method, payload]
    )
    if (sent !== "sent") {
      done(
        sent === "closed"
          ? gone()
          : Exit.fail(
              new InvalidPayload({
                service,
                method,
                issues: [
                  new Issue({ path: "", message: "the payload is larger than the channel's frame cap" })
                ]
              })
            )
      )
      return noCancel
    }
    pending.set(id, { deadline: performance.now() + callTimeout, service, method, done })
    if (timer === undefined) timer = setTimeout(expire, callTimeout)
    return () => {
      if (pending.delete(id)) channel.send(Framing.Kind.Cancel, [id])
    }
  }
  return { call }
}

const noCancel = () => {}

const hookEncoders = new Map<string, (payload: unknown) => unknown>(
  Object.entries(Hooks.payloads).map(([name, schema]) => [
    name,
    Schema.encodeSync(schema as unknown as Schema.Schema<unknown, unknown>)
  ])
)

/** Serves the plugin's calls to its context services from its sandbox. */
const hostHandlers = (
  admitLog: () => boolean,

  context: Context.Context<ContextServices>,
  plugin: () => PluginClient,
  hookScopes: Map<number, Scope.CloseableScope>
) => {
  const logger = Context.get(context, PluginLogger)
  const events = Context.get(context, Events)
  const storage = Context.get(context, PluginStorage)
  const services = Context.get(context, Services)
  const hooks = Context.get(context, Hooks.Hooks)
  const marker = new Event({
    id: "subscribed",
    type: PluginRuntime.subscribedMarker,
    source: "core",
    timestamp: 0,
    data: null
  })
  return PluginProtocol.PluginToHost.of({
    Log: ({ level, message, annotations }) =>
      Effect.suspend(() => (admitLog() ? logger.log(level, message, annotations) : Effect.void)),
    Publish: ({ type, data }) => events.publish(type, data),
    Subscribe: ({ pattern }) =>
      Stream.unwrapScoped(
        Effect.map(events.subscribe(pattern), (stream) => Stream.concat(Stream.succeed(marker), stream))
      ),
    StorageStore: ({ key, value }) => storage.store(key, value),
    StorageRetrieve: ({ key }) => Effect.map(storage.retrieve(key), Option.getOrNull),
    StorageDelete: ({ key }) => storage.delete(key),
    StorageList: ({ prefix }) => storage.list(prefix),
    Call: ({ service, method, payload }) => services.call(service, method, payload),
    RegisterHook: ({ id, name, priority, timeoutMillis }) =>
      Effect.gen(function* () {
        const scope = yield* Scope.make()
        const encode = hookEncoders.get(name) ?? ((payload: unknown) => payload)
        const handler = (payload: unknown) =>
          plugin()
            .RunHook({ id, payload: encode(payload) })
            .pipe(Effect.catchTag("RpcClientError", (error) => Effect.die(error)))
        yield* hooks
          .register(name, handler, {
            ...(priority === undefined ? {} : { priority }),
            ...(timeoutMillis === undefined ? {} : { timeoutMillis })
          })
          .pipe(
            Scope.extend(scope),
            Effect.onError(() => Scope.close(scope, Exit.void))
          )
        hookScopes.set(id, scope)
      }),
    UnregisterHook: ({ id }) =>
      Effect.suspend(() => {
        const scope = hookScopes.get(id)
        hookScopes.delete(id)
        return scope === undefined ? Effect.void : Scope.close(scope, Exit.void)
      }),
    RunCustomHook: ({ name, payload }) => hooks.run(name, payload)
  })
}

/**
 * At most `perSecond` lines a second pass; the rest are counted and reported once per window, so a
 * plugin cannot flood the host log (through its output or its logger).
 */
const lineLimiter = (perSecond: number, reportDropped: (dropped: number) => void) => {
  let windowStart = Date.now()
  let count = 0
  let dropped = 0
  return (): boolean => {
    const now = Date.now()
    if (now - windowStart >= 1000) {
      if (dropped > 0) reportDropped(dropped)
      windowStart = now
      count = 0
      dropped = 0
    }
    if (++count <= perSecond) return true
    dropped++
    return false
  }
}

/** Passes a plugin's stdout or stderr to the host log, line by line, rate-limited. */
const forwardOutput = (
  stream: NodeJS.ReadableStream,
  pluginId: string,
  channel: "stdout" | "stderr",
  linesPerSecond: number,
  log: (line: string) => void
) => {
  const admit = lineLimiter(linesPerSecond, (dropped) =>
    log(`[${channel}] ${dropped} lines from ${pluginId} dropped (over ${linesPerSecond}/s)`)
  )
  const lines = readline.createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY })
  lines.on("line", (line) => {
    if (admit()) log(`[${channel}] ${line}`)
  })
  return lines
}

/**
 * Waits for `effect` up to `millis` without racing fibers in the caller. Finalizers run
 * uninterruptibly, and when the node itself is being interrupted (Ctrl-C) an interruptible region
 * inside one is cut short at once: the stop sequence would be skipped. So the work runs in a fiber
 * of its own and a timer bounds the wait.
 */
const within = <A, E>(
  effect: Effect.Effect<A, E>,
  millis: number
): Effect.Effect<Option.Option<Exit.Exit<A, E>>> =>
  Effect.flatMap(Effect.forkDaemon(effect), (fiber) =>
    Effect.async<Option.Option<Exit.Exit<A, E>>>((resume) => {
      const timer = setTimeout(() => {
        fiber.unsafeInterruptAsFork(FiberId.none)
        resume(Effect.succeed(Option.none()))
      }, millis)
      fiber.addObserver((exit) => {
        clearTimeout(timer)
        resume(Effect.succeed(Option.some(exit)))
      })
    })
  )

/** The smallest `maxMemory` a plugin process can run under: an idle runtime's RSS is ~90 MB here. */
export const minimumMemoryBytes = 128 * 1024 * 1024

export const make = (options: SubprocessOptions): PluginLoader => {
  const manifest = options.manifest
  const pluginId = manifest.id
  const heartbeatInterval = options.heartbeatIntervalMillis ?? 1000
  const heartbeatDeadline = options.heartbeatDeadlineMillis ?? 3000
  const startTimeout = options.startTimeoutMillis ?? 15_000
  const stopGrace = options.stopGraceMillis ?? 5000
  const callTimeout = options.callTimeoutMillis ?? 30_000
  const sampleInterval = options.sampleIntervalMillis ?? 500
  const maxFrameBytes = options.maxFrameBytes ?? Framing.defaultMaxFrameBytes
  const { maxMemoryBytes, maxSockets } = PluginManifest.resourceLimits(manifest)

  const load = ({ context, granted }: LoadContext) =>
    Effect.gen(function* () {
      if (maxMemoryBytes !== undefined && maxMemoryBytes < minimumMemoryBytes) {
        return yield* new PluginFailure({
          pluginId,
          reason: `resources.maxMemory ${manifest.resources?.maxMemory} is below ${minimumMemoryBytes / 1048576}MB, the floor for a plugin process (an idle runtime holds about 90MB); raise it`
        })
      }
      const secret = crypto.randomBytes(32).toString("hex")
      // One budget from fork to started program, shared by the handshake and the Start call.
      const startDeadline = Date.now() + startTimeout
      const main = path.resolve(options.directory, manifest.main)
      // A standalone bundle carries its own runtime: run it directly instead of the SDK's entry,
      // unless its sources changed since it was built (a stale bundle must not hide newer code).
      const standalone =
        manifest.bundle === undefined ? undefined : standaloneEntry(options.directory, manifest.bundle)
      if (standalone !== undefined && "stale" in standalone) {
        yield* Effect.logWarning(
          `plugin ${pluginId}: not running its bundle ${manifest.bundle} (${standalone.stale}); running ${manifest.main} ` +
            "with the SDK's runtime instead, which starts slower: rebuild the bundle (npm run build)"
        )
      }
      const entry = standalone !== undefined && "bundle" in standalone ? standalone.bundle : runtimeEntry

      const heapFlags = v8Flags(manifest)
      if (options.dataDirectory !== undefined)
        fs.mkdirSync(options.dataDirectory, { recursive: true, mode: 0o700 })
      const sandboxFlags =
        options.sandbox === "none"
          ? []
          : permissionFlags({
              pluginDirectory: options.directory,
              dataDirectory: options.dataDirectory,
              granted
            })
      const nodeArgs = [
        ...heapFlags,
        ...sandboxFlags,
        ...(options.execArgv ?? []),
        ...Profiling.flagsFor(manifest.id, options.dataDirectory),
        entry
      ]
      const isolation = options.isolation ?? "none"
      const runAs = options.runAs ?? { uid: 65534, gid: 65534 }
      if (isolation === "uid" && options.dataDirectory !== undefined) {
        // The plugin's own directory must be writable by the user it runs as.
        fs.chownSync(options.dataDirectory, runAs.uid, runAs.gid)
      }
      const inner =
        isolation === "bubblewrap"
          ? bubblewrapArgs({
              pluginDirectory: options.directory,
              dataDirectory: options.dataDirectory,
              granted,
              node: [process.execPath, ...nodeArgs]
            })
          : [process.execPath, ...nodeArgs]
      const credentials =
        isolation === "uid" ? [`--reuid=${runAs.uid}`, `--regid=${runAs.gid}`, "--clear-groups"] : []
      if ((isolation === "uid" || isolation === "bubblewrap") && setpriv === undefined) {
        return yield* new PluginFailure({
          pluginId,
          reason: `isolation "${isolation}" needs setpriv (util-linux)`
        })
      }
      const [command, args] =
        setpriv === undefined
          ? [inner[0]!, inner.slice(1)]
          : [setpriv, [...credentials, "--pdeathsig", "KILL", "--", ...inner]]

      const exited = yield* Deferred.make<LastExit>()
      let killReason: LastExit["reason"] | undefined
      const child = yield* Effect.try({
        try: () =>
          childProcess.spawn(command, args, {
            cwd: options.directory,
            env: scrubbedEnv({
              [PluginRuntime.env.pluginId]: pluginId,
              [PluginRuntime.env.main]: main,
              [PluginRuntime.env.maxFrameBytes]: String(maxFrameBytes),
              ...(options.dataDirectory === undefined ? {} : { BLACKHOLE_PLUGIN_DATA: options.dataDirectory })
            }),
            // stdin closed; stdout/stderr captured; fd 3 is the channel; fd 4 carries the secret once.
            // Never "ipc": a hostile child can crash its parent through Node's IPC channel.
            stdio: ["ignore", "pipe", "pipe", "pipe", "pipe"],
            // Its own process group: a Ctrl-C at the terminal reaches the host, which stops plugins in order.
            detached: true
          }),
        catch: (error) => new PluginFailure({ pluginId, reason: `cannot start process: ${String(error)}` })
      })
      const pid = child.pid
      if (pid === undefined) {
        return yield* new PluginFailure({ pluginId, reason: "the plugin process did not start" })
      }
      child.on("error", () => {})
      const secretPipe = child.stdio[PluginRuntime.secretFd] as Duplex
      secretPipe.on("error", () => {})
      secretPipe.end(secret)
      // "close", not "exit": by then the channel's end has been read, so a half-written frame is a crash.
      child.once("close", (code, signal) => {
        const reason: LastExit["reason"] =
          killReason ??
          (code === 0 && signal === null
            ? "clean"
            : signal === "SIGABRT" || code === 134
              ? "oom"
              : signal === "SIGKILL"
                ? "killed"
                : "crash")
        Deferred.unsafeDone(exited, Exit.succeed({ reason, code, signal, at: new Date().toISOString() }))
      })
      const kill = (reason: LastExit["reason"], signal: NodeJS.Signals = "SIGKILL") => {
        killReason ??= reason
        try {
          // The whole process group: a plugin's own children go with it.
          process.kill(-pid, signal)
        } catch {
          try {
            child.kill(signal)
          } catch {
            // Already gone.
          }
        }
      }
      // The process is ours until the plugin Scope closes: make sure it is gone then, whatever happened.
      // By then the Stop call has run and the channel is closed, so a healthy runtime is exiting by itself;
      // otherwise SIGTERM, the grace period, then SIGKILL.
      const awaitExit = (millis: number) => within(Deferred.await(exited), millis)
      yield* Effect.addFinalizer(() =>
        Effect.gen(function* () {
          if (Option.isSome(yield* awaitExit(Math.min(500, stopGrace)))) return
          kill("clean", "SIGTERM")
          if (Option.isSome(yield* awaitExit(stopGrace))) return
          killReason = "killed"
          kill("killed", "SIGKILL")
          yield* Deferred.await(exited)
        })
      )

      yield* Effect.annotateLogs(Effect.logDebug(`spawned pid ${pid}`), { plugin: pluginId })
      // Forks in this plugin's runtime: its lines reach the node's own logger, not Effect's default one.
      const runFork = Runtime.runFork(yield* Effect.runtime<never>())
      const log = (line: string) =>
        runFork(Effect.logInfo(line).pipe(Effect.annotateLogs({ plugin: pluginId })))
      const linesPerSecond = options.logLinesPerSecond ?? 200
      forwardOutput(child.stdout!, pluginId, "stdout", linesPerSecond, log)
      forwardOutput(child.stderr!, pluginId, "stderr", linesPerSecond, log)

      const channel = yield* PluginChannel.make(child.stdio[3] as Duplex, { maxFrameBytes })
      // Synchronously, so a process that exits right after a broken frame is still recorded as a crash.
      channel.onClose((reason) => {
        if (reason._tag === "Invalid") killReason ??= "crash"
      })
      // A channel that breaks (garbage, oversize, closed) ends the process: it cannot be trusted any more.
      yield* Deferred.await(channel.closed).pipe(
        Effect.flatMap((reason) =>
          Effect.gen(function* () {
            if (reason._tag === "Invalid") {
              yield* Effect.logWarning(`plugin ${pluginId} sent an invalid frame: ${reason.error.message}`)
              kill("crash")
            } else if (!(yield* Deferred.isDone(exited))) {
              // The child closed its end but lives on: give it the grace period, then kill.
              yield* Deferred.await(exited).pipe(
                Effect.timeoutOption(Duration.millis(stopGrace)),
                Effect.tap((done) => Effect.sync(() => Option.isNone(done) && kill("killed")))
              )
            }
          })
        ),
        Effect.forkScoped
      )

      // Handshake: the child proves it is the process we spawned.
      const hello = yield* Queue.take(channel.control).pipe(
        Effect.raceFirst(Deferred.await(exited).pipe(Effect.map(() => undefined))),
        Effect.timeoutOption(Duration.millis(startTimeout))
      )
      const helloBody = Option.isSome(hello) && hello.value !== undefined ? hello.value : undefined
      if (
        helloBody === undefined ||
        helloBody.kind !== Framing.Kind.Handshake ||
        !Schema.is(PluginProtocol.Hello)(helloBody.body) ||
        helloBody.body.version !== PluginProtocol.version ||
        helloBody.body.pluginId !== pluginId ||
        !sameSecret(helloBody.body.secret, secret)
      ) {
        // Whether it had exited on its own is read before the kill: after it, it has (SIGKILL).
        const timedOut = Option.isNone(hello)
        kill("crash")
        const exit = yield* Deferred.await(exited).pipe(Effect.timeoutOption(Duration.millis(stopGrace)))
        return yield* new PluginFailure({
          pluginId,
          reason:
            helloBody === undefined
              ? !timedOut && Option.isSome(exit)
                ? `the plugin process exited before its handshake (${exit.value.code ?? exit.value.signal})`
                : `no handshake within ${startTimeout} ms`
              : "the plugin process sent an invalid handshake"
        })
      }
      channel.send(Framing.Kind.Handshake, { type: "welcome", version: PluginProtocol.version })

      let client: PluginClient | undefined
      const hookScopes = new Map<number, Scope.CloseableScope>()
      yield* Effect.addFinalizer(() =>
        Effect.forEach(hookScopes.values(), (scope) => Scope.close(scope, Exit.void))
      )
      const handlers = hostHandlers(
        lineLimiter(linesPerSecond, (dropped) =>
          log(`${dropped} log lines from ${pluginId} dropped (over ${linesPerSecond}/s)`)
        ),
        context,
        () => client!,
        hookScopes
      )
      // disableFatalDefects: a defect answers its own request only, not every call on the channel.
      yield* RpcServer.make(PluginProtocol.PluginToHost, {
        disableTracing: true,
        concurrency: "unbounded",
        disableFatalDefects: true
      }).pipe(
        Effect.provide(PluginProtocol.PluginToHost.toLayer(handlers)),
        Effect.provideServiceEffect(RpcServer.Protocol, PluginChannel.serverProtocol(channel)),
        Effect.forkScoped
      )
      // The unary context calls and logs arrive as Call frames (HostCalls): the same handlers, in fibers of
      // this plugin's runtime, interrupted (and awaited) when the plugin's Scope closes.
      const serveOptions = { clientId: 0, headers: Headers.empty }
      const stopHostCalls = HostCalls.serve(
        channel,
        (tag, payload) =>
          (handlers[tag] as (payload: unknown, options: unknown) => Effect.Effect<unknown, unknown>)(
            payload,
            serveOptions
          ),
        runFork
      )
      yield* Effect.addFinalizer(() => stopHostCalls)
      client = yield* RpcClient.make(PluginProtocol.HostToPlugin, { disableTracing: true }).pipe(
        Effect.provideServiceEffect(RpcClient.Protocol, PluginChannel.clientProtocol(channel))
      )
      const pluginClient = client
      // Set as the plugin's Scope starts closing (before the client shuts down): a call the closing
      // client interrupts is then the plugin going away, not the caller being interrupted.
      let closing = false
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          closing = true
        })
      )

      // When the process goes away the channel closes and every call in flight fails with a
      // RpcClientError: it reaches the caller as PluginUnavailable, promptly. No per-call race needed.
      const guarded = <A, E>(
        call: Effect.Effect<A, E | RpcClientError.RpcClientError>
      ): Effect.Effect<A, Exclude<E, RpcClientError.RpcClientError> | PluginUnavailable> =>
        Effect.catchIf(
          Effect.catchAllCause(
            call,
            (cause): Effect.Effect<never, E | RpcClientError.RpcClientError | PluginUnavailable> =>
              closing && Cause.isInterruptedOnly(cause)
                ? Effect.fail(
                    new PluginUnavailable({ pluginId, state: "stopped", reason: "the plugin has stopped" })
                  )
                : Effect.failCause(cause)
          ),
          (error): error is RpcClientError.RpcClientError =>
            Predicate.hasProperty(error, RpcClientErrorModule.TypeId),
          (error) =>
            Effect.flatMap(Deferred.poll(exited), (exit) =>
              Effect.fail(
                new PluginUnavailable({
                  pluginId,
                  state: Option.isSome(exit) ? "stopped" : "running",
                  reason: `the plugin process is gone (${error.message})`
                })
              )
            )
        ) as Effect.Effect<A, Exclude<E, RpcClientError.RpcClientError> | PluginUnavailable>

      // The directory this process may write is the loader's: that is the one the plugin is told.
      const nodeInfo =
        options.dataDirectory === undefined
          ? Context.get(context, NodeInfo)
          : { ...Context.get(context, NodeInfo), dataDirectory: options.dataDirectory }
      const started = yield* guarded(pluginClient.Start({ config: rawConfigOf(context), nodeInfo })).pipe(
        Effect.timeoutFail({
          duration: Duration.millis(Math.max(0, startDeadline - Date.now())),
          onTimeout: () =>
            new PluginFailure({ pluginId, reason: `the program did not start within ${startTimeout} ms` })
        }),
        Effect.mapError((error) =>
          error._tag === "InvalidConfig" || error._tag === "PluginFailure"
            ? error
            : new PluginFailure({ pluginId, reason: error.message })
        )
      )

      // Heartbeat: Blackhole's own (the rpc ping is fixed at 10 s). A plugin that misses the deadline is hung.
      let lastAnswer = Date.now()
      let beat = 0
      yield* Queue.take(channel.control).pipe(
        Effect.tap((frame) =>
          Effect.sync(() => {
            if (frame.kind === Framing.Kind.Heartbeat) lastAnswer = Date.now()
          })
        ),
        Effect.forever,
        Effect.forkScoped
      )
      // The process to sample: node itself, found inside bwrap (or setpriv, which execs in place).
      const samplePid = findNodeProcess(pid)
      let memoryBytes: number | null = readRss(samplePid)
      let lastBeat = Date.now()
      yield* Effect.sync(() => {
        const now = Date.now()
        // If this timer itself ran late, the host was stalled, not the plugin: its answers may be
        // sitting unread. Judge the plugin only on time the host was actually listening.
        if (now - lastBeat > heartbeatInterval + heartbeatDeadline / 2) lastAnswer = now
        lastBeat = now
        if (now - lastAnswer > heartbeatDeadline) {
          kill("hang")
          return
        }
        channel.send(Framing.Kind.Heartbeat, ++beat)
      }).pipe(
        Effect.zipRight(Effect.sleep(Duration.millis(heartbeatInterval))),
        Effect.forever,
        Effect.forkScoped
      )
      yield* Effect.sync(() => {
        memoryBytes = readRss(samplePid)
        if (maxMemoryBytes !== undefined && memoryBytes !== null && memoryBytes > maxMemoryBytes)
          kill("limit-memory")
        const sockets = maxSockets === undefined ? null : countSockets(samplePid)
        if (sockets !== null && maxSockets !== undefined && sockets > maxSockets) kill("limit-sockets")
      }).pipe(
        Effect.zipRight(Effect.sleep(Duration.millis(sampleInterval))),
        Effect.forever,
        Effect.forkScoped
      )

      // Stop first asks the program to run its finalizers; the process finalizer above then ends it.
      // A process that is already gone answers nothing: its closed channel fails the call at once.
      yield* Effect.addFinalizer(() => Effect.asVoid(within(pluginClient.Stop(), stopGrace)))

      // The mesh's per-call fast path: one Call frame out, one Reply frame back, no fibers of its own.
      // Interrupting the caller sends a Cancel frame; a closed channel fails every call in flight.
      const calls = directCalls(channel, pluginId, callTimeout)
      const services = started.services.map((service) => {
        const contract = shapeContract(service)
        const direct: DirectDispatch = (method, payload, done) =>
          calls.call(service.name, method, payload, done)
        const dispatch: ServiceContract.Dispatch = (method, payload) =>
          Effect.async<unknown, MeshError | ServiceContract.MethodError>((resume) => {
            const cancel = direct(method, payload, resume)
            return Effect.sync(cancel)
          }).pipe(
            MeshTracing.span(`plugin ${pluginId} ${service.name}.${method}`, {
              "plugin.id": pluginId,
              "plugin.pid": pid,
              "plugin.loader": "subprocess"
            })
          )
        return { contract, dispatch, direct, selfTimed: true }
      })

      const loaded: LoadedPlugin = {
        services,
        health: guarded(pluginClient.Health()).pipe(
          Effect.catchAll((error) => Effect.succeed({ status: "unhealthy" as const, details: error.message }))
        ),
        handlers: pluginHandlers(started, pluginClient, guarded, pluginId),
        pid: samplePid,
        exit: Deferred.await(exited),
        memoryBytes: () => memoryBytes
      }
      return loaded
    }).pipe(
      Effect.catchAllDefect((defect) => Effect.fail(new PluginFailure({ pluginId, reason: String(defect) })))
    )

  return {
    kind: "subprocess",
    // Checked against the plugin's config.schema.json here, before any plugin code runs; the plugin
    // decodes it again with its own Schema (defaults applied).
    decodeConfig: (raw) => Effect.as(ConfigSchemaFile.validate(options.directory, manifest, raw), raw),
    load
  }
}

/**
 * The handlers a subprocess plugin returned, as the host uses them: each one
 * a call over the channel. A failed call is reported in the handler's own
 * terms (a storage failure, a 503, a logged protocol message), never a defect.
 */
const pluginHandlers = (
  started: PluginProtocol.Started,
  client: PluginClient,
  guarded: <A, E>(
    call: Effect.Effect<A, E | RpcClientError.RpcClientError>
  ) => Effect.Effect<A, Exclude<E, RpcClientError.RpcClientError> | PluginUnavailable>,
  pluginId: string
): PluginLoaderModule.HostHandlers => {
  const logged = (what: string) => (effect: Effect.Effect<unknown, { readonly message: string }>) =>
    effect.pipe(
      Effect.catchAll((error) => Effect.logWarning(`${what} failed: ${error.message}`)),
      Effect.annotateLogs({ plugin: pluginId }),
      Effect.asVoid
    )
  const storageOp = (op: typeof PluginProtocol.StorageOp.Type) =>
    guarded(client.Storage({ op })).pipe(
      Effect.catchTag("PluginUnavailable", (error) =>
        Effect.fail(new StorageFailure({ operation: op._tag, reason: error.message }))
      )
    )
  return {
    ...(started.storage
      ? {
          storage: {
            store: (key, value) => Effect.asVoid(storageOp({ _tag: "Store", key, value })),
            retrieve: (key) =>
              Effect.map(storageOp({ _tag: "Retrieve", key }), (value) =>
                typeof value === "string" ? new Uint8Array(Buffer.from(value, "base64")) : undefined
              ),
            delete: (key) => Effect.map(storageOp({ _tag: "Delete", key }), (value) => value === true),
            list: (prefix) =>
              Effect.map(storageOp({ _tag: "List", prefix }), (value) =>
                Array.isArray(value) ? value.filter((key): key is string => typeof key === "string") : []
              ),
            capacity: Effect.flatMap(storageOp({ _tag: "Capacity" }), (value) =>
              Schema.decodeUnknown(Capacity)(value).pipe(
                Effect.mapError(
                  () =>
                    new StorageFailure({ operation: "Capacity", reason: "the plugin answered a bad shape" })
                )
              )
            )
          }
        }
      : {}),
    ...(started.integration === null
      ? {}
      : { integration: { kind: started.integration.kind, sync: logged("sync")(guarded(client.Sync())) } }),
    ...(started.protocol === null
      ? {}
      : {
          protocol: {
            ...started.protocol,
            handleMessage: (peer, message) =>
              logged("protocol message")(guarded(client.ProtocolMessage({ peer, message }))),
            onPeerConnected: (peer) =>
              logged("peer event")(guarded(client.PeerEvent({ peer, connected: true }))),
            onPeerDisconnected: (peer) =>
              logged("peer event")(guarded(client.PeerEvent({ peer, connected: false })))
          }
        }),
    ...(started.http === null
      ? {}
      : {
          http: {
            path: started.http.path,
            routes: started.http.routes.map(({ method, path }, route) => ({
              method,
              path,
              handle: (request: HttpEndpoint.Request) =>
                guarded(client.Http({ route, request })).pipe(
                  Effect.catchAll((error) =>
                    Effect.succeed(HttpEndpoint.json({ _tag: error._tag, message: error.message }, 503))
                  )
                )
            }))
          }
        })
  }
}

/** SHA-256 of files, kept while their size and mtime stay: every spawn checks a bundle's sources. */
const hashes = new Map<string, { readonly stamp: string; readonly hash: string }>()
const contentHash = (file: string): string => {
  const stat = fs.statSync(file)
  const stamp = `${stat.size}:${stat.mtimeMs}`
  const known = hashes.get(file)
  if (known?.stamp === stamp) return known.hash
  const hash = crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex")
  hashes.set(file, { stamp, hash })
  return hash
}

/** `<bundle>.inputs.json`: file → SHA-256 (hex) of what the bundle was built from and of what the build wrote. */
const BundleRecord = Schema.parseJson(
  Schema.Struct({
    inputs: Schema.Record({ key: Schema.String, value: Schema.String }),
    outputs: Schema.Record({ key: Schema.String, value: Schema.String })
  })
)
const decodeBundleRecord = Schema.decodeUnknownOption(BundleRecord)

/**
 * The plugin's standalone bundle, when it has one that matches its sources: scripts/bundle-plugins.mjs
 * records the content hash of every plugin and SDK file it bundled (`<bundle>.inputs.json`), and a
 * bundle whose sources changed since (a rebuild of the plugin or the SDK) is stale and not used.
 * The files the build wrote (the launcher and the script it compiles) must match too: the launcher
 * takes the code cache made for the script it was built with without hashing the script itself.
 */
const standaloneEntry = (
  directory: string,
  bundleFile: string
): { readonly bundle: string } | { readonly stale: string } => {
  const bundle = path.resolve(directory, bundleFile)
  const recordFile = `${bundle}.inputs.json`
  try {
    const record = decodeBundleRecord(fs.readFileSync(recordFile, "utf8"))
    if (Option.isNone(record))
      return { stale: `${path.basename(recordFile)} is not a build record of this version` }
    const { inputs, outputs } = record.value
    if (!Object.keys(outputs).some((file) => path.resolve(directory, file) === bundle)) {
      return { stale: `${path.basename(recordFile)} does not record ${bundleFile}` }
    }
    for (const [file, hash] of [...Object.entries(inputs), ...Object.entries(outputs)]) {
      if (contentHash(path.resolve(directory, file)) !== hash)
        return { stale: `${file} changed since the build` }
    }
    return { bundle }
  } catch (error) {
    return { stale: error instanceof Error ? error.message : String(error) }
  }
}

/** The raw config the host hands the plugin (the sandbox holds it as PluginConfig). */
const rawConfigOf = (context: Context.Context<ContextServices>): unknown => Context.get(context, PluginConfig)

/** Constant-time comparison of the handshake secret. */
const sameSecret = (given: string, expected: string): boolean => {
  const a = Buffer.from(given)
  const b = Buffer.from(expected)
  return a.length === b.length && crypto.timingSafeEqual(a, b)
}
