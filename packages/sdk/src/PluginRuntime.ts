/**
 * The plugin side of a subprocess plugin: the program the host starts in each
 * child (`node <sdk>/dist/runtime.js`). It opens the channel on file
 * descriptor 3, says hello with the per-spawn secret, loads the plugin
 * module, and then serves `HostToPlugin` while the plugin's context services
 * call the host over `PluginToHost`. The plugin's definition runs exactly as
 * it does in process: only the context layer differs.
 */

import * as fs from "node:fs"
import * as net from "node:net"
import { pathToFileURL } from "node:url"
import * as RpcClient from "@effect/rpc/RpcClient"
import * as RpcClientError from "@effect/rpc/RpcClientError"
import type * as RpcGroup from "@effect/rpc/RpcGroup"
import * as RpcServer from "@effect/rpc/RpcServer"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import * as Mailbox from "effect/Mailbox"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { MeshError, PluginFailure, ServiceNotFound } from "./Errors.js"
import type { Event } from "./Event.js"
import { Events } from "./Events.js"
import * as Framing from "./Framing.js"
import * as Hooks from "./Hooks.js"
import * as HostCalls from "./HostCalls.js"
import { NodeInfo } from "./NodeInfo.js"
import * as Plugin from "./Plugin.js"
import * as PluginChannel from "./PluginChannel.js"
import * as PluginConfig from "./PluginConfig.js"
import { PluginLogger } from "./PluginLogger.js"
import * as PluginProtocol from "./PluginProtocol.js"
import { PluginStorage } from "./PluginStorage.js"
import * as ServiceContract from "./ServiceContract.js"
import { Services } from "./Services.js"

/** Environment variables the host sets for the runtime. */
export const env = {
  pluginId: "BLACKHOLE_PLUGIN_ID",
  main: "BLACKHOLE_PLUGIN_MAIN",
  maxFrameBytes: "BLACKHOLE_MAX_FRAME_BYTES"
} as const

/** The file descriptor of the channel in the child. */
export const channelFd = 3

/** The file descriptor the host writes the per-spawn secret to (then closes). */
export const secretFd = 4

/** Events buffered per subscription in the plugin process; past it new events are dropped and counted. */
const subscriptionBuffer = 1024

/** The marker a host's Subscribe stream sends first, so a subscription is live when `subscribe` returns. */
export const subscribedMarker = "blackhole.subscribed"

type HostClient = RpcClient.RpcClient<
  RpcGroup.Rpcs<typeof PluginProtocol.PluginToHost>,
  RpcClientError.RpcClientError
>

/** A broken channel is the host's problem to report (the process is about to be replaced): a defect here. */
const orDieOnChannel = <A, E, R>(
  effect: Effect.Effect<A, E | RpcClientError.RpcClientError, R>
): Effect.Effect<A, Exclude<E, RpcClientError.RpcClientError>, R> =>
  Effect.catchIf(
    effect,
    (error): error is RpcClientError.RpcClientError => Predicate.hasProperty(error, RpcClientError.TypeId),
    Effect.die
  ) as Effect.Effect<A, Exclude<E, RpcClientError.RpcClientError>, R>

const hookDecoders = new Map<string, (payload: unknown) => Effect.Effect<unknown, unknown>>(
  Object.entries(Hooks.payloads).map(([name, schema]) => [
    name,
    Schema.decodeUnknown(schema as unknown as Schema.Schema<unknown, unknown>)
  ])
)

/** How a failed fast-path call travels: the mesh error or method error, encoded. */
export const CallError = Schema.Union(MeshError, ServiceContract.MethodError)
const encodeCallErrorSync = Schema.encodeSync(CallError)
const encodeCallError = (error: unknown): unknown => {
  try {
    return encodeCallErrorSync(error as typeof CallError.Type)
  } catch {
    return encodeCallErrorSync(
      new PluginFailure({ pluginId: "unknown", reason: `unencodable error: ${String(error)}` })
    )
  }
}

/** Builds the context services of a plugin over the host client. */
const makeContext = (
  host: HostClient,
  config: unknown,
  nodeInfo: NodeInfo["Type"],
  hookHandlers: Map<number, (payload: unknown) => Effect.Effect<void, Hooks.Veto>>
): Context.Context<Plugin.ContextServices> => {
  let nextHookId = 1
  const logger = PluginLogger.of({
    // Logs are not awaited: a plugin should not pay a round trip per line.
    log: (level, message, annotations) =>
      orDieOnChannel(
        host.Log({ level, message, ...(annotations === undefined ? {} : { annotations }) }, { discard: true })
      )
  })
  const events = Events.of({
    publish: (type, data) => orDieOnChannel(host.Publish({ type, data })),
    subscribe: (pattern) =>
      Effect.gen(function* () {
        const mailbox = yield* host.Subscribe({ pattern }, { asMailbox: true })
        // The host sends a marker first: once it arrives the subscription is live (or it was refused).
        const first = yield* mailbox.take.pipe(
          Effect.catchAll((error) =>
            error._tag === "PermissionDenied" ? Effect.fail(error) : Effect.die(error)
          )
        )
        if (first.type !== subscribedMarker)
          return yield* Effect.dieMessage("subscription did not start with its marker")
        // The rpc stream shares the channel's one inbound pump with every answer this plugin waits for:
        // if it blocked on a full buffer, a handler awaiting a host call would wait forever. So a fiber
        // moves events at once into the subscription's own bounded buffer, which drops (and counts)
        // when the handler falls behind, like the host bus does.
        const buffer = yield* Queue.dropping<Event>(subscriptionBuffer)
        let dropped = 0
        // A chunk at a time, synchronously: one step per chunk the host sent, not per event.
        yield* Mailbox.toStream(mailbox).pipe(
          Stream.runForEachChunk((chunk) =>
            Effect.suspend(() => {
              let report = false
              for (const event of chunk) {
                if (buffer.unsafeOffer(event)) continue
                if (++dropped % 1000 === 1) report = true
              }
              return report
                ? logger.log("warn", `subscription ${pattern}: ${dropped} events dropped (handler too slow)`)
                : Effect.void
            })
          ),
          Effect.ensuring(buffer.shutdown),
          Effect.forkScoped
        )
        return Stream.fromQueue(buffer)
      })
  })
  const storage = PluginStorage.of({
    store: (key, value) => orDieOnChannel(host.StorageStore({ key, value })),
    retrieve: (key) => orDieOnChannel(host.StorageRetrieve({ key })).pipe(Effect.map(Option.fromNullable)),
    delete: (key) => orDieOnChannel(host.StorageDelete({ key })),
    list: (prefix) => orDieOnChannel(host.StorageList({ prefix: prefix ?? "" }))
  })
  const call = (service: string, method: string, payload: unknown) =>
    orDieOnChannel(host.Call({ service, method, payload }))
  const services = Services.of({
    client: (contract) =>
      ServiceContract.makeClient(contract, (method, payload) => call(contract.name, method, payload)),
    call
  })
  const hooks = Hooks.Hooks.of({
    register: (name, handler, options) =>
      Effect.gen(function* () {
        const id = nextHookId++
        // Built-in hooks' payloads arrive encoded (bytes as base64): decode them for the handler.
        const decode = hookDecoders.get(name)
        const typed = handler as (payload: unknown) => Effect.Effect<void, Hooks.Veto>
        hookHandlers.set(
          id,
          decode === undefined ? typed : (payload) => Effect.flatMap(Effect.orDie(decode(payload)), typed)
        )
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => hookHandlers.delete(id)).pipe(
            Effect.zipRight(host.UnregisterHook({ id }).pipe(Effect.ignore))
          )
        )
        yield* orDieOnChannel(host.RegisterHook({ id, name, ...options }))
      }),
    run: (name, payload) => orDieOnChannel(host.RunCustomHook({ name, payload }))
  })
  return Context.make(PluginLogger, logger).pipe(
    Context.add(PluginConfig.PluginConfig, config),
    Context.add(Events, events),
    Context.add(PluginStorage, storage),
    Context.add(Services, services),
    Context.add(Hooks.Hooks, hooks),
    Context.add(NodeInfo, nodeInfo)
  )
}

const describe = (
  handlers: Plugin.CommonHandlers &
    Partial<Plugin.StorageHandlers & Plugin.ProtocolHandlers & Plugin.IntegrationHandlers>
): PluginProtocol.Started => ({
  services: (handlers.services ?? []).map((implementation) => ({
    name: implementation.contract.name,
    methods: Array.from(implementation.contract.group.requests.keys(), (tag) => ({
      tag,
      access: ServiceContract.accessOf(implementation.contract, tag) ?? "admin"
    }))
  })),
  health: handlers.health !== undefined,
  storage: handlers.storage !== undefined,
  integration: handlers.integration === undefined ? null : { kind: handlers.integration.kind },
  protocol:
    handlers.protocol === undefined
      ? null
      : { name: handlers.protocol.name, version: handlers.protocol.version },
  http:
    handlers.http === undefined
      ? null
      : {
          path: handlers.http.path,
          routes: handlers.http.routes.map(({ method, path }) => ({ method, path }))
        }
})

/** Serves one plugin definition over an open channel until the channel closes. */
export const serve = (definition: Plugin.Any, channel: PluginChannel.Channel, pluginId: string) =>
  Effect.gen(function* () {
    const rpcHost = yield* RpcClient.make(PluginProtocol.PluginToHost, { disableTracing: true }).pipe(
      Effect.provideServiceEffect(RpcClient.Protocol, PluginChannel.clientProtocol(channel))
    )
    // The unary context calls and logs take the fast path (Call/Reply frames, the same contract);
    // subscriptions and hooks stay @effect/rpc requests.
    const host: HostClient = {
      ...rpcHost,
      ...(HostCalls.makeCaller(channel) as unknown as Pick<HostClient, HostCalls.Tag>)
    }
    const hookHandlers = new Map<number, (payload: unknown) => Effect.Effect<void, Hooks.Veto>>()
    type Running = {
      readonly scope: Scope.CloseableScope
      readonly handlers: Plugin.CommonHandlers &
        Partial<Plugin.StorageHandlers & Plugin.ProtocolHandlers & Plugin.IntegrationHandlers>
      readonly dispatch: Map<string, ServiceContract.Dispatch>
    }
    let running: Running | undefined
    const notRunning = () => Effect.dieMessage(`plugin ${pluginId} is not running`)

    const handlers = PluginProtocol.HostToPlugin.of({
      Start: ({ config, nodeInfo }) =>
        Effect.gen(function* () {
          if (running !== undefined) return describe(running.handlers)
          const decoded = yield* PluginConfig.decode(definition.config, config, pluginId)
          const context = makeContext(host, decoded, nodeInfo, hookHandlers)
          const scope = yield* Scope.make()
          const returned = yield* (
            definition.program as Effect.Effect<
              Running["handlers"],
              unknown,
              Plugin.ContextServices | Scope.Scope
            >
          ).pipe(
            Effect.provide(context),
            Scope.extend(scope),
            Effect.catchAllCause((cause) =>
              Scope.close(scope, Exit.failCause(cause)).pipe(
                Effect.zipRight(Effect.fail(new PluginFailure({ pluginId, reason: Cause.pretty(cause) })))
              )
            )
          )
          const dispatch = new Map(
            (returned.services ?? []).map((implementation) => [
              implementation.contract.name,
              ServiceContract.toDispatch(implementation, pluginId)
            ])
          )
          running = { scope, handlers: returned, dispatch }
          return describe(returned)
        }),
      Stop: () =>
        Effect.suspend(() => {
          const current = running
          running = undefined
          return current === undefined ? Effect.void : Scope.close(current.scope, Exit.void)
        }),
      Health: () =>
        running === undefined
          ? notRunning()
          : (running.handlers.health ?? Effect.succeed({ status: "healthy" as const })),
      Invoke: ({ service, method, payload }) => {
        const dispatch = running?.dispatch.get(service)
        return dispatch === undefined ? notRunning() : dispatch(method, payload)
      },
      RunHook: ({ id, payload }) => {
        const handler = hookHandlers.get(id)
        if (handler === undefined) return Effect.void
        return handler(payload)
      },
      Storage: ({ op }) => {
        const backend = running?.handlers.storage
        if (backend === undefined) return notRunning()
        switch (op._tag) {
          case "Store":
            return backend.store(op.key, op.value)
          case "Retrieve":
            return Effect.map(backend.retrieve(op.key), (value) =>
              value === undefined ? null : Buffer.from(value).toString("base64")
            )
          case "Delete":
            return backend.delete(op.key)
          case "List":
            return backend.list(op.prefix)
          case "Capacity":
            return backend.capacity
        }
      },
      Sync: () => running?.handlers.integration?.sync ?? notRunning(),
      ProtocolMessage: ({ peer, message }) =>
        running?.handlers.protocol?.handleMessage(peer, message) ?? notRunning(),
      PeerEvent: ({ peer, connected }) => {
        const protocol = running?.handlers.protocol
        if (protocol === undefined) return notRunning()
        const handler = connected ? protocol.onPeerConnected : protocol.onPeerDisconnected
        return handler === undefined ? Effect.void : handler(peer)
      },
      // Routes are addressed by their index in what Start reported.
      Http: ({ route, request }) => running?.handlers.http?.routes[route]?.handle(request) ?? notRunning()
    })

    // disableFatalDefects: a defect answers its own request only, not every call on the channel.
    yield* RpcServer.make(PluginProtocol.HostToPlugin, {
      disableTracing: true,
      concurrency: "unbounded",
      disableFatalDefects: true
    }).pipe(
      Effect.provide(PluginProtocol.HostToPlugin.toLayer(handlers)),
      Effect.provideServiceEffect(RpcServer.Protocol, PluginChannel.serverProtocol(channel)),
      Effect.forkScoped
    )

    // The mesh's per-call fast path: a Call frame runs the service's dispatch in a fiber of its own and
    // answers with one Reply frame; a Cancel frame interrupts it (the caller was interrupted).
    const calls = new Map<number, Fiber.RuntimeFiber<unknown, unknown>>()
    const reply = (id: number, body: readonly [number, 0 | 1 | 2, unknown] | readonly [number, 0]) => {
      if (channel.send(Framing.Kind.Reply, body) === "too-large") {
        channel.send(Framing.Kind.Reply, [id, 2, "the result is larger than the channel's frame cap"])
      }
    }
    channel.onFrame(Framing.Kind.Call, (body) => {
      const [id, service, method, payload] = body as [number, string, string, unknown]
      const dispatch = running?.dispatch.get(service)
      if (dispatch === undefined) {
        channel.send(Framing.Kind.Reply, [id, 1, encodeCallError(new ServiceNotFound({ service }))])
        return
      }
      const answer = (exit: Exit.Exit<unknown, unknown>) => {
        // An undefined result travels as a shorter Reply: JSON would turn it into null.
        if (Exit.isSuccess(exit)) return reply(id, exit.value === undefined ? [id, 0] : [id, 0, exit.value])
        const failure = Cause.failureOption(exit.cause)
        reply(
          id,
          Option.isSome(failure) ? [id, 1, encodeCallError(failure.value)] : [id, 2, Cause.pretty(exit.cause)]
        )
      }
      // A dispatch that is already settled (a handler answering with `Effect.succeed`) needs no
      // fiber. Otherwise the fiber runs at once, up to its first asynchronous step: a handler that
      // needs none is answered here, without being tracked as a call in flight.
      const effect = dispatch(method, payload)
      if (Exit.isExit(effect)) return answer(effect)
      const fiber = Effect.runFork(effect)
      const done = fiber.unsafePoll()
      if (done !== null) return answer(done)
      calls.set(id, fiber)
      fiber.addObserver((exit) => {
        calls.delete(id)
        answer(exit)
      })
    })
    channel.onFrame(Framing.Kind.Cancel, (body) => {
      const [id] = body as [number]
      calls.get(id)?.unsafeInterruptAsFork(FiberId.none)
    })
    yield* Effect.addFinalizer(() => Effect.forEach(calls.values(), Fiber.interrupt, { discard: true }))

    // Heartbeats are answered by the same scheduler that runs the plugin: a blocked loop misses them.
    yield* Queue.take(channel.control).pipe(
      Effect.tap((frame) =>
        frame.kind === Framing.Kind.Heartbeat
          ? Effect.sync(() => channel.send(Framing.Kind.Heartbeat, frame.body))
          : Effect.void
      ),
      Effect.forever,
      Effect.forkScoped
    )
  })

/**
 * Reads the runtime's settings from the environment, and the per-spawn secret from its own pipe
 * (file descriptor 4, closed after): a secret in the environment would stay readable in
 * /proc/<pid>/environ for the process's lifetime.
 */
const settings = () => {
  const pluginId = process.env[env.pluginId]
  const main = process.env[env.main]
  let secret: string | undefined
  try {
    secret = fs.readFileSync(secretFd, "utf8").trim()
    fs.closeSync(secretFd)
  } catch {
    secret = undefined
  }
  if (pluginId === undefined || secret === undefined || secret === "") {
    throw new Error(
      `the plugin runtime is started by the Blackhole host (missing ${env.pluginId} or the secret on fd ${secretFd})`
    )
  }
  const maxFrameBytes = Number(process.env[env.maxFrameBytes] ?? Framing.defaultMaxFrameBytes)
  if (!Number.isSafeInteger(maxFrameBytes) || maxFrameBytes < 1024) {
    throw new Error(`${env.maxFrameBytes} must be a whole number of bytes, at least 1024`)
  }
  return { pluginId, main, secret, maxFrameBytes }
}

/** Imports the plugin module the host named and takes its default export. */
const importDefinition = (pluginId: string, modulePath: string | undefined) =>
  Effect.gen(function* () {
    if (modulePath === undefined) {
      return yield* new PluginFailure({
        pluginId,
        reason: `${env.main} is not set: the host names the module to load`
      })
    }
    const loaded = yield* Effect.tryPromise({
      try: () => import(pathToFileURL(modulePath).href) as Promise<{ default?: unknown }>,
      catch: (error) =>
        new PluginFailure({
          pluginId,
          reason: `cannot load ${modulePath}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`
        })
    })
    return loaded.default
  })

/**
 * The runtime's main program: handshake, load, serve until the channel closes. A standalone bundle
 * passes its own definition; otherwise the module the host names is imported.
 */
export const mainWith = (bundled?: unknown) =>
  Effect.gen(function* () {
    const { pluginId, main: modulePath, secret, maxFrameBytes } = settings()
    const socket = new net.Socket({ fd: channelFd, readable: true, writable: true })
    const channel = yield* PluginChannel.make(socket, { maxFrameBytes })
    channel.send(Framing.Kind.Handshake, {
      type: "hello",
      version: PluginProtocol.version,
      pluginId,
      secret,
      pid: process.pid
    } satisfies PluginProtocol.Hello)
    // Load the plugin while the host answers the hello.
    const definition = bundled ?? (yield* importDefinition(pluginId, modulePath))
    if (!Plugin.isPluginDefinition(definition)) {
      return yield* new PluginFailure({
        pluginId,
        reason: `${bundled === undefined ? modulePath : "the bundle"} has no default export made with Plugin.service/storage/protocol/integration`
      })
    }
    const welcome = yield* Queue.take(channel.control)
    if (welcome.kind !== Framing.Kind.Handshake || !Schema.is(PluginProtocol.Welcome)(welcome.body)) {
      return yield* new PluginFailure({ pluginId, reason: "the host did not welcome this process" })
    }
    if (welcome.body.version !== PluginProtocol.version) {
      return yield* new PluginFailure({
        pluginId,
        reason: `protocol version mismatch: host ${welcome.body.version}, runtime ${PluginProtocol.version}`
      })
    }
    yield* serve(definition, channel, pluginId)
    // Served until the host closes the channel; then this process has nothing left to do.
    const reason = yield* Deferred.await(channel.closed)
    // A channel the host broke is not a clean end: exit non-zero so the host records it as a crash.
    if (reason._tag !== "Ended") process.exitCode = 2
  }).pipe(Effect.scoped)

/** The runtime's main program for the module the host names in the environment. */
export const main = mainWith()

/**
 * Runs the runtime and exits the process when the channel closes or the runtime fails. A
 * standalone bundle's entry calls it with the plugin's definition; the SDK's own entry without.
 */
export const runMain = (definition?: unknown): void => {
  // A parent watch besides the kernel's death signal: an orphan exits on its own.
  const parent = process.ppid
  const watch = setInterval(() => {
    if (process.ppid !== parent) process.exit(70)
  }, 500)
  watch.unref()
  Effect.runPromiseExit(mainWith(definition).pipe(Effect.provide(Layer.empty))).then((exit) => {
    if (Exit.isFailure(exit) && !Exit.isInterrupted(exit)) {
      process.stderr.write(`${Cause.pretty(exit.cause)}\n`)
      process.exit(1)
    }
    process.exit()
  })
}
