import * as Errors from "@blackhole/sdk/Errors"
import * as Hooks from "@blackhole/sdk/Hooks"
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as HookRegistry from "../src/HookRegistry.js"
import * as Principal from "../src/Principal.js"
import * as ServiceRegistry from "../src/ServiceRegistry.js"

/** A method's own typed error: it must reach the caller as this class, not as a mesh error. */
class NoSuchKey extends Schema.TaggedError<NoSuchKey>()("NoSuchKey", { key: Schema.String }) {}

/** A small key/value service with one method of each access class, plus misbehaving ones. */
const KeyValue = ServiceContract.make(
  "x",
  RpcGroup.make(
    ServiceContract.read(
      Rpc.make("get", { payload: { key: Schema.String }, success: Schema.Number, error: NoSuchKey })
    ),
    ServiceContract.read(Rpc.make("size", { success: Schema.Number })),
    // `at` crosses the mesh encoded as a string: a raw payload must be the encoded form.
    ServiceContract.write(
      Rpc.make("put", { payload: { key: Schema.String, value: Schema.Number, at: Schema.NumberFromString } })
    ),
    ServiceContract.admin(Rpc.make("reset", {})),
    ServiceContract.read(Rpc.make("boom", {})),
    ServiceContract.read(Rpc.make("hang", {}))
  )
)

/** A fresh implementation of `x` with its own state, served as if by `owner`. */
const makeKeyValue = () => {
  const state = new Map<string, number>()
  const implementation = ServiceContract.implement(KeyValue, {
    get: ({ key }) => {
      const value = state.get(key)
      return value === undefined ? Effect.fail(new NoSuchKey({ key })) : Effect.succeed(value)
    },
    size: () => Effect.sync(() => state.size),
    put: ({ key, value }) =>
      Effect.sync(() => {
        state.set(key, value)
      }),
    reset: () => Effect.sync(() => state.clear()),
    boom: () => Effect.dieMessage("handler exploded"),
    hang: () => Effect.never
  })
  return { state, implementation }
}

const OWNER = "com.example.owner"

/** Registers a fresh `x` owned by OWNER in the current Scope. */
const registerKeyValue = Effect.gen(function* () {
  const registry = yield* ServiceRegistry.ServiceRegistry
  const kv = makeKeyValue()
  yield* registry.register(KeyValue, ServiceContract.toDispatch(kv.implementation, OWNER), OWNER)
  return { registry, state: kv.state }
})

const TestLayer = ServiceRegistry.layer().pipe(Layer.provideMerge(HookRegistry.layer()))

const caller = (granted: ReadonlyArray<string>) => Principal.plugin("com.example.caller", granted)

const put = { key: "a", value: 1, at: 7 }

describe("ServiceRegistry", () => {
  it.scoped("a client builds Struct payloads: all-optional fields without input, constructor defaults", () =>
    Effect.gen(function* () {
      const Payloads = ServiceContract.make(
        "payloads",
        RpcGroup.make(
          ServiceContract.read(
            Rpc.make("search", {
              payload: { prefix: Schema.optional(Schema.String) },
              success: Schema.String
            })
          ),
          ServiceContract.read(
            Rpc.make("page", {
              payload: {
                size: Schema.Number.pipe(
                  Schema.propertySignature,
                  Schema.withConstructorDefault(() => 20)
                )
              },
              success: Schema.Number
            })
          )
        )
      )
      const registry = yield* ServiceRegistry.ServiceRegistry
      const implementation = ServiceContract.implement(Payloads, {
        search: ({ prefix }) => Effect.succeed(prefix ?? "(none)"),
        page: ({ size }) => Effect.succeed(size)
      })
      yield* registry.register(Payloads, ServiceContract.toDispatch(implementation, OWNER), OWNER)
      const client = registry.client(Principal.operator, Payloads) as unknown as {
        readonly search: (payload?: { readonly prefix?: string }) => Effect.Effect<string, unknown>
        readonly page: (payload: { readonly size?: number }) => Effect.Effect<number, unknown>
      }
      assert.strictEqual(yield* client.search(), "(none)")
      assert.strictEqual(yield* client.search({ prefix: "a" }), "a")
      assert.strictEqual(yield* client.page({}), 20)
      assert.strictEqual(yield* client.page({ size: 5 }), 5)
      const invalid = yield* Effect.flip(client.search({ prefix: 3 as unknown as string }))
      assert.strictEqual((invalid as { _tag: string })._tag, "InvalidPayload")
    }).pipe(Effect.provide(TestLayer))
  )

  it.scoped("typed client calls as the operator reach the handler and return decoded results", () =>
    Effect.gen(function* () {
      const { registry, state } = yield* registerKeyValue
      const client = registry.client(Principal.operator, KeyValue)
      yield* client.put(put)
      assert.strictEqual(state.get("a"), 1)
      assert.strictEqual(yield* client.get({ key: "a" }), 1)
      assert.strictEqual(yield* client.size(), 1)
      yield* client.reset()
      assert.strictEqual(yield* client.size(), 0)

      const registration = Option.getOrThrow(registry.lookup("x"))
      assert.strictEqual(registration.owner, OWNER)
      assert.deepStrictEqual(
        (yield* registry.list).map((r) => r.name),
        ["x"]
      )
    }).pipe(Effect.provide(TestLayer))
  )

  it.scoped("a plugin granted service:x:read calls read methods and is denied write and admin ones", () =>
    Effect.gen(function* () {
      const { registry, state } = yield* registerKeyValue
      state.set("a", 1)
      const client = registry.client(caller(["service:x:read"]), KeyValue)
      assert.strictEqual(yield* client.get({ key: "a" }), 1)
      assert.strictEqual(yield* client.size(), 1)

      const denied = yield* Effect.flip(client.put({ key: "b", value: 2, at: 0 }))
      assert.instanceOf(denied, Errors.PermissionDenied)
      assert.strictEqual((denied as Errors.PermissionDenied).permission, "service:x:put")
      assert.strictEqual((denied as Errors.PermissionDenied).principal, "com.example.caller")
      assert.isFalse(state.has("b"), "a denied call never reaches the handler")

      const admin = yield* Effect.flip(client.reset())
      assert.instanceOf(admin, Errors.PermissionDenied)
      assert.strictEqual((admin as Errors.PermissionDenied).permission, "service:x:reset")
      assert.strictEqual(state.size, 1)
    }).pipe(Effect.provide(TestLayer))
  )

  it.scoped("a grant by method name allows exactly that method", () =>
    Effect.gen(function* () {
      const { registry, state } = yield* registerKeyValue
      const client = registry.client(caller(["service:x:put"]), KeyValue)
      yield* client.put(put)
      assert.strictEqual(state.get("a"), 1)
      const get = yield* Effect.flip(client.get({ key: "a" }))
      assert.instanceOf(get, Errors.PermissionDenied)
      assert.strictEqual((get as Errors.PermissionDenied).permission, "service:x:get")
      const reset = yield* Effect.flip(client.reset())
      assert.instanceOf(reset, Errors.PermissionDenied)
    }).pipe(Effect.provide(TestLayer))
  )

  it.scoped("service:x covers every method of x and nothing of another service", () =>
    Effect.gen(function* () {
      const { registry, state } = yield* registerKeyValue
      const client = registry.client(caller(["service:x"]), KeyValue)
      yield* client.put(put)
      assert.strictEqual(yield* client.get({ key: "a" }), 1)
      yield* client.reset()
      assert.strictEqual(state.size, 0)

      const other = registry.client(caller(["service:y", "service:xy:read"]), KeyValue)
      const denied = yield* Effect.flip(other.size())
      assert.instanceOf(denied, Errors.PermissionDenied)
      assert.strictEqual((denied as Errors.PermissionDenied).permission, "service:x:size")
    }).pipe(Effect.provide(TestLayer))
  )

  it.scoped("a declared service that is not serving is unavailable, naming its provider and state", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry.ServiceRegistry
      const scope = yield* Scope.make()
      yield* registry.declare("x", "com.example.provider", () => "restarting").pipe(Scope.extend(scope))
      const unavailable = yield* Effect.flip(registry.call(Principal.operator, "x", "size", undefined))
      assert.instanceOf(unavailable, Errors.PluginUnavailable)
      assert.strictEqual((unavailable as Errors.PluginUnavailable).pluginId, "com.example.provider")
      assert.strictEqual((unavailable as Errors.PluginUnavailable).state, "restarting")
      yield* Scope.close(scope, Exit.void)
      const unknown = yield* Effect.flip(registry.call(Principal.operator, "x", "size", undefined))
      assert.instanceOf(unknown, Errors.ServiceNotFound)
    }).pipe(Effect.provide(TestLayer))
  )

  it.scoped("an unknown service or method fails with ServiceNotFound or MethodNotFound", () =>
    Effect.gen(function* () {
      const { registry } = yield* registerKeyValue
      const noService = yield* Effect.flip(registry.call(Principal.operator, "nope", "get", { key: "a" }))
      assert.instanceOf(noService, Errors.ServiceNotFound)
      assert.strictEqual((noService as Errors.ServiceNotFound).service, "nope")

      const noMethod = yield* Effect.flip(registry.call(Principal.operator, "x", "missing", {}))
      assert.instanceOf(noMethod, Errors.MethodNotFound)
      assert.strictEqual((noMethod as Errors.MethodNotFound).service, "x")
      assert.strictEqual((noMethod as Errors.MethodNotFound).method, "missing")
    }).pipe(Effect.provide(TestLayer))
  )

  it.scoped("a bad encoded payload fails with InvalidPayload naming the bad field's path", () =>
    Effect.gen(function* () {
      const { registry, state } = yield* registerKeyValue
      // The encoded form of `at` is a string; a number is what the decoded form would hold.
      const error = yield* Effect.flip(
        registry.call(Principal.operator, "x", "put", { key: "a", value: 1, at: 7 })
      )
      assert.instanceOf(error, Errors.InvalidPayload)
      const invalid = error as Errors.InvalidPayload
      assert.strictEqual(invalid.service, "x")
      assert.strictEqual(invalid.method, "put")
      assert.deepStrictEqual(
        invalid.issues.map((issue) => issue.path),
        ["at"]
      )

      const nested = yield* Effect.flip(
        registry.call(Principal.operator, "x", "put", { key: 3, value: "one", at: "7" })
      )
      assert.instanceOf(nested, Errors.InvalidPayload)
      assert.includeMembers(
        (nested as Errors.InvalidPayload).issues.map((issue) => issue.path),
        ["key"]
      )
      assert.strictEqual(state.size, 0)

      // The same payload, properly encoded, goes through.
      yield* registry.call(Principal.operator, "x", "put", { key: "a", value: 1, at: "7" })
      assert.strictEqual(state.get("a"), 1)
    }).pipe(Effect.provide(TestLayer))
  )

  it.scoped("a method's typed error reaches a typed client decoded as the same class", () =>
    Effect.gen(function* () {
      const { registry } = yield* registerKeyValue
      const error = yield* Effect.flip(registry.client(Principal.operator, KeyValue).get({ key: "missing" }))
      assert.instanceOf(error, NoSuchKey)
      assert.strictEqual((error as NoSuchKey).key, "missing")

      // Raw callers see it still encoded, wrapped in MethodError.
      const raw = yield* Effect.flip(registry.call(Principal.operator, "x", "get", { key: "missing" }))
      assert.instanceOf(raw, ServiceContract.MethodError)
      assert.deepStrictEqual((raw as ServiceContract.MethodError).error, {
        _tag: "NoSuchKey",
        key: "missing"
      })
    }).pipe(Effect.provide(TestLayer))
  )

  it.scoped("a handler defect arrives as PluginFailure and the caller keeps working", () =>
    Effect.gen(function* () {
      const { registry } = yield* registerKeyValue
      const client = registry.client(Principal.operator, KeyValue)
      // A typed failure, not a defect: Effect.flip would let a defect through and fail the test.
      const failure = yield* Effect.flip(client.boom())
      assert.instanceOf(failure, Errors.PluginFailure)
      assert.strictEqual((failure as Errors.PluginFailure).pluginId, OWNER)
      assert.include((failure as Errors.PluginFailure).reason, "handler exploded")
      yield* client.put(put)
      assert.strictEqual(yield* client.get({ key: "a" }), 1)
    }).pipe(Effect.provide(TestLayer))
  )

  it.scoped("core names are reserved for the core", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry.ServiceRegistry
      const Fake = ServiceContract.make(
        "storage",
        RpcGroup.make(ServiceContract.read(Rpc.make("ping", { success: Schema.String })))
      )
      const implementation = ServiceContract.implement(Fake, { ping: () => Effect.succeed("fake") })
      for (const owner of ["com.example.thief", "operator"]) {
        const error = yield* Effect.flip(
          registry.register(Fake, ServiceContract.toDispatch(implementation, owner), owner)
        )
        assert.instanceOf(error, Errors.ServiceNameTaken)
        assert.strictEqual(error.service, "storage")
        assert.include(error.owner, "core")
      }
      assert.isTrue(Option.isNone(registry.lookup("storage")))

      yield* registry.register(Fake, ServiceContract.toDispatch(implementation, "core"), "core")
      assert.strictEqual(Option.getOrThrow(registry.lookup("storage")).owner, "core")
    }).pipe(Effect.provide(TestLayer))
  )

  it.scoped("a taken name is refused naming its owner, and is free again once the owner's Scope closes", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry.ServiceRegistry
      const first = makeKeyValue()
      const scope = yield* Scope.make()
      yield* registry
        .register(KeyValue, ServiceContract.toDispatch(first.implementation, OWNER), OWNER)
        .pipe(Scope.extend(scope))

      const second = makeKeyValue()
      const taken = yield* Effect.flip(
        registry.register(
          KeyValue,
          ServiceContract.toDispatch(second.implementation, "com.example.late"),
          "com.example.late"
        )
      )
      assert.instanceOf(taken, Errors.ServiceNameTaken)
      assert.strictEqual(taken.service, "x")
      assert.strictEqual(taken.owner, OWNER)
      // The refused registration did not replace the first one.
      yield* registry.client(Principal.operator, KeyValue).put(put)
      assert.strictEqual(first.state.get("a"), 1)
      assert.strictEqual(second.state.size, 0)

      yield* Scope.close(scope, Exit.void)
      assert.isTrue(Option.isNone(registry.lookup("x")))
      const gone = yield* Effect.flip(registry.client(Principal.operator, KeyValue).size())
      assert.instanceOf(gone, Errors.ServiceNotFound)

      yield* registry.register(
        KeyValue,
        ServiceContract.toDispatch(second.implementation, "com.example.late"),
        "com.example.late"
      )
      assert.strictEqual(Option.getOrThrow(registry.lookup("x")).owner, "com.example.late")
      yield* registry.client(Principal.operator, KeyValue).put(put)
      assert.strictEqual(second.state.get("a"), 1)
    }).pipe(Effect.provide(TestLayer))
  )

  it.scoped(
    "a service.before.call veto blocks the call with HookVetoed; the hook sees the call and caller",
    () =>
      Effect.gen(function* () {
        const { registry, state } = yield* registerKeyValue
        const hooks = yield* HookRegistry.HookRegistry
        const seen: Array<unknown> = []
        yield* hooks.register("service.before.call", "com.example.guard", (payload) => {
          seen.push(payload)
          const call = payload as typeof Hooks.ServiceCall.Type
          return call.method === "put" ? Hooks.veto("writes are frozen") : Effect.void
        })

        const client = registry.client(caller(["service:x"]), KeyValue)
        const error = yield* Effect.flip(client.put(put))
        assert.instanceOf(error, Errors.HookVetoed)
        const vetoed = error as Errors.HookVetoed
        assert.strictEqual(vetoed.hook, "service.before.call")
        assert.strictEqual(vetoed.by, "com.example.guard")
        assert.strictEqual(vetoed.reason, "writes are frozen")
        assert.strictEqual(state.size, 0, "the vetoed call never reached the handler")
        assert.deepStrictEqual(seen, [
          {
            service: "x",
            method: "put",
            principal: "com.example.caller",
            payload: { key: "a", value: 1, at: "7" }
          }
        ])

        // Other calls pass the hook.
        assert.strictEqual(yield* client.size(), 0)
        assert.strictEqual(seen.length, 2)
      }).pipe(Effect.provide(TestLayer))
  )

  it.scoped(
    "a client's call is looked up and checked when it runs, not when it is built, and each run calls",
    () =>
      Effect.gen(function* () {
        const registry = yield* ServiceRegistry.ServiceRegistry
        const client = registry.client(Principal.operator, KeyValue)
        // Built before the service exists: running it later reaches the service registered by then.
        const size = client.size()
        const scope = yield* Scope.make()
        const kv = makeKeyValue()
        yield* registry
          .register(KeyValue, ServiceContract.toDispatch(kv.implementation, OWNER), OWNER)
          .pipe(Scope.extend(scope))
        const put = client.put({ key: "a", value: 1, at: 7 })
        yield* put
        kv.state.clear()
        yield* put
        assert.strictEqual(yield* size, 1, "the same effect run twice made two calls")
        // And the same effect run after the service is gone fails as a call made now would.
        yield* Scope.close(scope, Exit.void)
        assert.instanceOf(yield* Effect.flip(size), Errors.ServiceNotFound)
      }).pipe(Effect.provide(TestLayer))
  )

  it.scoped("a vetoed call never calls the handler, not even a handler answering at once", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry.ServiceRegistry
      const hooks = yield* HookRegistry.HookRegistry
      const Touch = ServiceContract.make("touch", RpcGroup.make(ServiceContract.write(Rpc.make("touch", {}))))
      let touched = 0
      const implementation = ServiceContract.implement(Touch, {
        // Its work happens when the handler is called, and its effect is complete: dispatching it
        // settles the call at once, so the mesh must not call it before the hook has let it through.
        touch: () => {
          touched += 1
          return Effect.void
        }
      })
      yield* registry.register(Touch, ServiceContract.toDispatch(implementation, OWNER), OWNER)
      const client = registry.client(Principal.operator, Touch)
      yield* client.touch()
      assert.strictEqual(touched, 1)
      yield* hooks.register("service.before.call", "com.example.guard", () => Hooks.veto("frozen"))
      assert.instanceOf(yield* Effect.flip(client.touch()), Errors.HookVetoed)
      assert.strictEqual(touched, 1)
    }).pipe(Effect.provide(TestLayer))
  )

  it.scoped("a call that is denied never runs the service.before.call hooks", () =>
    Effect.gen(function* () {
      const { registry } = yield* registerKeyValue
      const hooks = yield* HookRegistry.HookRegistry
      let ran = 0
      yield* hooks.register("service.before.call", "com.example.guard", () =>
        Effect.sync(() => {
          ran += 1
        })
      )
      const denied = yield* Effect.flip(registry.client(caller([]), KeyValue).size())
      assert.instanceOf(denied, Errors.PermissionDenied)
      assert.strictEqual(ran, 0)
    }).pipe(Effect.provide(TestLayer))
  )

  it.scopedLive("a call that does not answer within the timeout fails with PluginUnavailable", () =>
    Effect.gen(function* () {
      const { registry } = yield* registerKeyValue
      const error = yield* Effect.flip(registry.client(Principal.operator, KeyValue).hang())
      assert.instanceOf(error, Errors.PluginUnavailable)
      const unavailable = error as Errors.PluginUnavailable
      assert.strictEqual(unavailable.pluginId, OWNER)
      assert.include(unavailable.reason, "x.hang")
      // The mesh still serves other calls.
      assert.strictEqual(yield* registry.client(Principal.operator, KeyValue).size(), 0)
    }).pipe(
      Effect.provide(
        ServiceRegistry.layer({ callTimeoutMillis: 50 }).pipe(Layer.provideMerge(HookRegistry.layer()))
      )
    )
  )
})
