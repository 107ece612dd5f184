import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import {
  HookVetoed,
  type InvalidConfig,
  type MeshError,
  MethodNotFound,
  PermissionDenied,
  PluginFailure,
  ServiceNameTaken,
  ServiceNotFound
} from "../Errors.js"
import { Event } from "../Event.js"
import * as EventPattern from "../EventPattern.js"
import { Events } from "../Events.js"
import * as Hooks from "../Hooks.js"
import { NodeInfo } from "../NodeInfo.js"
import * as Permission from "../Permission.js"
import type * as Plugin from "../Plugin.js"
import * as PluginConfig from "../PluginConfig.js"
import { PluginLogger } from "../PluginLogger.js"
import { PluginStorage } from "../PluginStorage.js"
import * as ServiceContract from "../ServiceContract.js"
import { Services } from "../Services.js"
import type { PluginTest } from "../testing.js"
import { TestRecorder } from "../testing.js"

const defaultNodeInfo: Context.Tag.Service<NodeInfo> = {
  nodeId: "12D3KooWTestNode",
  version: "0.1.0",
  environment: "test"
}

/** Covers every permission under the segment rules (`"*"` alone does not parse). */
const everything: ReadonlyArray<string> = ["*:*"]

/** The node config's default hook budget (see `Hooks.HookOptions.timeoutMillis`). */
const defaultHookTimeoutMillis = 1000

/** Hook names the host's registry accepts. */
const hookName = /^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)+$/

// Copies, so neither the plugin nor the test can change stored bytes through a shared buffer
// (the real storage never aliases its caller's memory); `new Uint8Array` also unwraps Buffers.
const copy = (bytes: Uint8Array): Uint8Array => new Uint8Array(bytes)

interface Subscriber {
  readonly pattern: string
  readonly queue: Queue.Queue<Event>
}

interface HookEntry extends TestRecorder.HookRegistration {
  readonly order: number
  readonly handler: (payload: unknown) => Effect.Effect<void, Hooks.Veto>
}

interface MeshEntry {
  readonly contract: ServiceContract.Any
  readonly dispatch: ServiceContract.Dispatch
  readonly owner: string
}

/** The context plus what `run` needs beyond it. */
interface Harness {
  readonly pluginId: string
  readonly context: Context.Context<Plugin.ContextServices | TestRecorder>
  readonly recorder: TestRecorder.Service
  /** Puts the plugin's own services on the fake mesh for as long as the Scope lives. */
  readonly register: (
    services: ReadonlyArray<ServiceContract.Implementation>,
    declared: ReadonlyArray<string>
  ) => Effect.Effect<void, ServiceNameTaken | PluginFailure, Scope.Scope>
}

const grantsOf = (options: PluginTest.Options): Effect.Effect<ReadonlyArray<string>> => {
  const { permissions } = options
  if (permissions === undefined) return Effect.succeed(everything)
  if (permissions === "manifest") {
    return options.definition === undefined
      ? Effect.dieMessage(`PluginTest: permissions "manifest" needs a definition`)
      : Effect.succeed(options.definition.manifest.permissions ?? [])
  }
  // A mistyped grant would otherwise silently cover nothing and fail the test far from its cause.
  const invalid = permissions.flatMap((p) =>
    Either.match(Permission.parse(p), { onLeft: (r) => [r], onRight: () => [] })
  )
  return invalid.length === 0
    ? Effect.succeed(permissions)
    : Effect.dieMessage(`PluginTest: ${invalid.join("; ")} (grant everything with "*:*")`)
}

// The host's own decoder, so a config the node would refuse (bad type, unknown key) fails here too.
const decodeConfig = (
  options: PluginTest.Options,
  pluginId: string
): Effect.Effect<unknown, InvalidConfig> =>
  options.definition === undefined
    ? Effect.succeed(options.config ?? {})
    : PluginConfig.decode(options.definition.config, options.config, pluginId)

// The payload a subprocess would receive: encoded with the hook's schema on one side, decoded on the other.
const builtinPayloads: Readonly<Record<string, Schema.Schema.AnyNoContext>> = Hooks.payloads

const asSent = (name: string, payload: unknown): Effect.Effect<unknown> => {
  const schema = Object.hasOwn(builtinPayloads, name) ? builtinPayloads[name] : undefined
  if (schema === undefined) return Effect.succeed(payload)
  return Schema.encodeUnknown(schema)(payload).pipe(
    Effect.flatMap(Schema.decodeUnknown(schema)),
    Effect.catchAll((error) =>
      Effect.dieMessage(`runHook("${name}"): the payload does not match the hook's schema: ${error.message}`)
    )
  )
}

// Hooks fail closed: a handler that dies or is interrupted refuses, like one that vetoes.
const toVeto = (cause: Cause.Cause<Hooks.Veto>): Hooks.Veto =>
  Option.getOrElse(Cause.failureOption(cause), () =>
    Option.match(Cause.dieOption(cause), {
      onSome: (defect) =>
        new Hooks.Veto({ reason: `hook died: ${defect instanceof Error ? defect.message : String(defect)}` }),
      onNone: () => new Hooks.Veto({ reason: "hook was interrupted" })
    })
  )

const make = (options: PluginTest.Options): Effect.Effect<Harness, InvalidConfig> =>
  Effect.gen(function* () {
    const pluginId = options.pluginId ?? options.definition?.manifest.id ?? "test.plugin"
    const grants = yield* grantsOf(options)
    const config = yield* decodeConfig(options, pluginId)
    const capacity = options.eventBuffer ?? 1024

    // Plain mutable state: every access is one synchronous step, so no fiber sees it half-updated.
    const published: Array<TestRecorder.Published> = []
    const writes: Array<TestRecorder.Write> = []
    const logs: Array<TestRecorder.LogLine> = []
    const calls: Array<TestRecorder.Call> = []
    const hooks: Array<HookEntry> = []
    const subscribers = new Set<Subscriber>()
    const storage = new Map<string, Uint8Array>()
    const mesh = new Map<string, MeshEntry>()
    let eventCount = 0
    let hookCount = 0
    let dropped = 0

    for (const [key, value] of options.storage ?? []) storage.set(key, copy(value))
    for (const implementation of options.services ?? []) {
      const name = implementation.contract.name
      if (mesh.has(name)) return yield* Effect.dieMessage(`PluginTest: two fake services are named "${name}"`)
      mesh.set(name, {
        contract: implementation.contract,
        dispatch: ServiceContract.toDispatch(implementation, name),
        owner: "a fake service (PluginTest options.services)"
      })
    }

    const allowed = (permission: string): boolean => Permission.allows(grants, permission)
    const require = (permission: string): Effect.Effect<void, PermissionDenied> =>
      Effect.suspend(() =>
        allowed(permission)
          ? Effect.void
          : Effect.fail(new PermissionDenied({ permission, principal: pluginId }))
      )

    // A `*` in a published type would reach subscribers as if it were a type; the test should hear of it.
    const concrete = (operation: string, type: string): Effect.Effect<void> =>
      Either.match(Schema.decodeUnknownEither(EventPattern.EventType)(type), {
        onLeft: (error) => Effect.dieMessage(`${operation}: ${error.message}`),
        onRight: () => Effect.void
      })

    const deliver = (type: string, data: unknown, source: string): Effect.Effect<void> =>
      Effect.flatMap(Clock.currentTimeMillis, (timestamp) =>
        Effect.sync(() => {
          const event = new Event({ id: `test-event-${++eventCount}`, type, source, timestamp, data })
          for (const subscriber of subscribers) {
            // Synchronous and non-blocking: a full buffer drops and counts, the publisher never waits.
            if (EventPattern.matches(subscriber.pattern, type) && !Queue.unsafeOffer(subscriber.queue, event))
              dropped++
          }
        })
      )

    const events: Context.Tag.Service<Events> = {
      publish: (type, data) =>
        Effect.gen(function* () {
          yield* concrete("Events.publish", type)
          yield* require(`events:publish:${type}`)
          yield* Effect.sync(() => published.push({ type, data }))
          yield* deliver(type, data, pluginId)
        }),
      subscribe: (pattern) =>
        Effect.gen(function* () {
          yield* require(`events:subscribe:${pattern}`)
          const queue = yield* Queue.dropping<Event>(capacity)
          const subscriber: Subscriber = { pattern, queue }
          // Registered before returning, so the subscription is live when `subscribe` returns.
          yield* Effect.acquireRelease(
            Effect.sync(() => subscribers.add(subscriber)),
            () =>
              Effect.zipRight(
                Effect.sync(() => subscribers.delete(subscriber)),
                Queue.shutdown(queue)
              )
          )
          return Stream.fromQueue(queue)
        })
    }

    const pluginStorage: Context.Tag.Service<PluginStorage> = {
      store: (key, value) =>
        Effect.zipRight(
          require("storage:write"),
          Effect.sync(() => {
            storage.set(key, copy(value))
            writes.push({ _tag: "Store", key, value: copy(value) })
          })
        ),
      retrieve: (key) =>
        Effect.zipRight(
          require("storage:read"),
          Effect.sync(() => Option.map(Option.fromNullable(storage.get(key)), copy))
        ),
      delete: (key) =>
        Effect.zipRight(
          require("storage:write"),
          Effect.sync(() => {
            const existed = storage.delete(key)
            writes.push({ _tag: "Delete", key, existed })
            return existed
          })
        ),
      list: (prefix = "") =>
        Effect.zipRight(
          require("storage:read"),
          Effect.sync(() => [...storage.keys()].filter((key) => key.startsWith(prefix)).sort())
        )
    }

    const logger: Context.Tag.Service<PluginLogger> = {
      log: (level, message, annotations) =>
        Effect.sync(() => void logs.push({ level, message, annotations: annotations ?? {} }))
    }

    const ordered = (): Array<HookEntry> =>
      [...hooks].sort((a, b) => a.priority - b.priority || a.order - b.order)

    // The hooks registered on `name`, run as the host runs them: only `before` hooks stop at a failure.
    const runHooks = (name: string, payload: unknown): Effect.Effect<void, Hooks.Veto> =>
      Effect.gen(function* () {
        // As in the host, only `before` hooks stop at a failure; the others all run.
        const before = name.split(".")[1] === "before"
        let first: Hooks.Veto | undefined
        for (const entry of ordered().filter((hook) => hook.name === name)) {
          // Outside the timeout: a payload that does not fit the schema is the test's defect, not a veto.
          const sent = yield* asSent(name, payload)
          const exit = yield* Effect.suspend(() => entry.handler(sent)).pipe(
            Effect.timeoutFail({
              duration: Duration.millis(entry.timeoutMillis),
              onTimeout: () => new Hooks.Veto({ reason: `hook timed out after ${entry.timeoutMillis} ms` })
            }),
            Effect.exit
          )
          if (Exit.isSuccess(exit)) continue
          const veto = toVeto(exit.cause)
          if (before) return yield* Effect.fail(veto)
          first ??= veto
        }
        if (first !== undefined) return yield* Effect.fail(first)
      })

    const hookService: Context.Tag.Service<Hooks.Hooks> = {
      run: (name, payload) =>
        Hooks.isBuiltin(name)
          ? Effect.dieMessage(
              `${name} is run by the node itself; a plugin runs only its own custom hooks (use TestRecorder.runHook to simulate the node)`
            )
          : require(`hooks:run:${name}`).pipe(
              Effect.zipRight(runHooks(name, payload)),
              Effect.mapError((error) =>
                error._tag === "Veto"
                  ? new HookVetoed({ hook: name, by: pluginId, reason: error.reason })
                  : error
              )
            ),
      register: (name, handler, hookOptions) =>
        Effect.gen(function* () {
          yield* require(`hooks:register:${name}`)
          const priority = hookOptions?.priority ?? 0
          const timeoutMillis = hookOptions?.timeoutMillis ?? defaultHookTimeoutMillis
          // The host's registry refuses these as defects; a test should not pass with them.
          if (!hookName.test(name)) {
            return yield* Effect.dieMessage(
              `invalid hook name ${JSON.stringify(name)}: use dotted segments of [a-z][a-z0-9-]*, at least two`
            )
          }
          if (!Number.isFinite(priority))
            return yield* Effect.dieMessage(`hook ${name}: priority must be finite`)
          if (!(timeoutMillis > 0 && timeoutMillis <= Number.MAX_SAFE_INTEGER)) {
            return yield* Effect.dieMessage(
              `hook ${name}: timeoutMillis must be positive, got ${timeoutMillis}`
            )
          }
          const entry: HookEntry = {
            name,
            priority,
            timeoutMillis,
            order: ++hookCount,
            // The handler is only ever called with this hook's payload, so widening its parameter is safe.
            handler: handler as unknown as HookEntry["handler"]
          }
          yield* Effect.acquireRelease(
            Effect.sync(() => hooks.push(entry)),
            () => Effect.sync(() => hooks.splice(hooks.indexOf(entry), 1))
          )
        })
    }

    const call = (
      service: string,
      method: string,
      payload: unknown
    ): Effect.Effect<unknown, MeshError | ServiceContract.MethodError> =>
      Effect.suspend(() => {
        // Same order and rule as the host's registry: the service, its method, then a grant on the
        // method itself or on its access class.
        const entry = mesh.get(service)
        if (entry === undefined) return Effect.fail(new ServiceNotFound({ service }))
        const access = ServiceContract.accessOf(entry.contract, method)
        if (access === undefined) return Effect.fail(new MethodNotFound({ service, method }))
        const exact = `service:${service}:${method}`
        if (!allowed(exact) && !allowed(`service:${service}:${access}`)) {
          return Effect.fail(new PermissionDenied({ permission: exact, principal: pluginId }))
        }
        calls.push({ service, method, payload })
        return entry.dispatch(method, payload)
      })

    const services: Context.Tag.Service<Services> = {
      client: (contract) =>
        ServiceContract.makeClient(contract, (method, payload) => call(contract.name, method, payload)),
      call
    }

    const recorder: TestRecorder.Service = {
      published: Effect.sync(() => [...published]),
      stored: Effect.sync(() =>
        [...storage.entries()]
          .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
          .map(([key, value]) => [key, copy(value)] as const)
      ),
      writes: Effect.sync(() => [...writes]),
      logs: Effect.sync(() => [...logs]),
      calls: Effect.sync(() => [...calls]),
      hooks: Effect.sync(() =>
        ordered().map(({ name, priority, timeoutMillis }) => ({ name, priority, timeoutMillis }))
      ),
      subscriptions: Effect.sync(() => [...subscribers].map((subscriber) => subscriber.pattern)),
      dropped: Effect.sync(() => dropped),
      emit: (type, data, source = "test") =>
        Effect.zipRight(concrete("TestRecorder.emit", type), deliver(type, data, source)),
      runHook: runHooks
    }

    const context = Context.make(PluginLogger, logger).pipe(
      Context.add(PluginConfig.PluginConfig, config),
      Context.add(Events, events),
      Context.add(PluginStorage, pluginStorage),
      Context.add(Services, services),
      Context.add(Hooks.Hooks, hookService),
      Context.add(NodeInfo, { ...defaultNodeInfo, ...options.nodeInfo }),
      Context.add(TestRecorder, recorder)
    )

    const register: Harness["register"] = (implementations, declared) =>
      Effect.forEach(
        implementations,
        (implementation): Effect.Effect<void, ServiceNameTaken | PluginFailure, Scope.Scope> => {
          const name = implementation.contract.name
          // The host's checks, in its order: the manifest, then the registry.
          if (!declared.includes(name)) {
            return Effect.fail(
              new PluginFailure({
                pluginId,
                reason: `serves "${name}", which its manifest does not declare under "services"`
              })
            )
          }
          const taken = mesh.get(name)
          if (taken !== undefined)
            return Effect.fail(new ServiceNameTaken({ service: name, owner: taken.owner }))
          if (Permission.isCoreService(name)) {
            return Effect.fail(new ServiceNameTaken({ service: name, owner: "core (reserved name)" }))
          }
          const entry: MeshEntry = {
            contract: implementation.contract,
            dispatch: ServiceContract.toDispatch(implementation, pluginId),
            owner: pluginId
          }
          return Effect.acquireRelease(
            Effect.sync(() => void mesh.set(name, entry)),
            () => Effect.sync(() => mesh.delete(name))
          )
        },
        { discard: true }
      )

    return { pluginId, context, recorder, register }
  })

export const layer = (
  options: PluginTest.Options = {}
): Layer.Layer<Plugin.ContextServices | TestRecorder, InvalidConfig> =>
  Layer.effectContext(Effect.map(make(options), (harness) => harness.context))

export const run = <T extends Plugin.PluginType, A, I, E>(
  definition: Plugin.PluginDefinition<T, A, I, E>,
  options: PluginTest.RunOptions = {}
): Effect.Effect<PluginTest.Running<T>, E | InvalidConfig | ServiceNameTaken | PluginFailure, Scope.Scope> =>
  Effect.gen(function* () {
    const harness = yield* make({ ...options, definition })
    // The program's Scope is the caller's: closing it runs the plugin's finalizers, its Stop.
    const handlers = yield* Effect.provide(definition.program, harness.context)
    const common: Plugin.CommonHandlers = handlers
    const own = common.services ?? []
    yield* harness.register(own, definition.manifest.services ?? [])
    // Compiled once per service, not per client: `client` may be called in a loop.
    const dispatches = new Map(
      own.map((implementation) => [
        implementation.contract.name,
        ServiceContract.toDispatch(implementation, harness.pluginId)
      ])
    )
    const client = <C extends ServiceContract.Any>(contract: C): ServiceContract.Client<C> =>
      ServiceContract.makeClient(contract, (method, payload) => {
        const dispatch = dispatches.get(contract.name)
        return dispatch === undefined
          ? Effect.fail(new ServiceNotFound({ service: contract.name }))
          : dispatch(method, payload)
      })
    return { handlers, client, recorder: harness.recorder }
  })

export const eventually = <A, E, R>(
  self: Effect.Effect<A, E, R>,
  options?: { readonly maxYields?: number }
): Effect.Effect<A, E, R> => {
  const attempt = (left: number): Effect.Effect<A, E, R> =>
    Effect.catchAllCause(self, (cause) =>
      // Interruption is the test ending, not a condition still to come true.
      left <= 0 || Cause.isInterruptedOnly(cause)
        ? Effect.failCause(cause)
        : Effect.zipRight(Effect.yieldNow(), attempt(left - 1))
    )
  return Effect.suspend(() => attempt(options?.maxYields ?? 1000))
}
