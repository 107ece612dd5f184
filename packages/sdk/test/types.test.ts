/**
 * Type tests: a plugin author who gets a contract wrong gets a compile error.
 * `npm run typecheck` checks this file; each `@ts-expect-error` has a twin
 * right beside it that compiles, so the error is the one described.
 */
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import { describe, expectTypeOf, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Hooks from "../src/Hooks.js"
import * as Plugin from "../src/Plugin.js"
import * as PluginConfig from "../src/PluginConfig.js"
import * as ServiceContract from "../src/ServiceContract.js"
import * as Services from "../src/Services.js"

class NotFound extends Schema.TaggedError<NotFound>()("NotFound", { key: Schema.String }) {}

const Greeter = ServiceContract.make(
  "greeter",
  RpcGroup.make(
    ServiceContract.read(Rpc.make("greet", { payload: { name: Schema.String }, success: Schema.String })),
    ServiceContract.read(
      Rpc.make("lookup", { payload: { key: Schema.String }, success: Schema.Number, error: NotFound })
    )
  )
)

const manifest = { id: "com.example.types", name: "Types", version: "1.0.0", services: ["greeter"] } as const

const backend: Plugin.StorageBackend = {
  store: () => Effect.void,
  retrieve: () => Effect.succeed(undefined),
  delete: () => Effect.succeed(false),
  list: () => Effect.succeed([]),
  capacity: Effect.succeed({ usedBytes: 0, totalBytes: null })
}

describe("plugin contracts are types", () => {
  it("a storage plugin must implement the whole storage contract", () => {
    Plugin.storage({
      manifest: { ...manifest, type: "storage" },
      config: PluginConfig.none,
      program: Effect.succeed({ storage: backend })
    })
    const { list: _list, ...withoutList } = backend
    Plugin.storage({
      manifest: { ...manifest, type: "storage" },
      config: PluginConfig.none,
      // @ts-expect-error a storage backend without `list` does not compile
      program: Effect.succeed({ storage: withoutList })
    })
  })

  it("a service plugin must serve at least one service", () => {
    const implementation = ServiceContract.implement(Greeter, {
      greet: ({ name }) => Effect.succeed(`hello ${name}`),
      lookup: ({ key }) => (key === "x" ? Effect.succeed(1) : Effect.fail(new NotFound({ key })))
    })
    Plugin.service({
      manifest: { ...manifest, type: "service" },
      config: PluginConfig.none,
      program: Effect.succeed({ services: [implementation] as const })
    })
    Plugin.service({
      manifest: { ...manifest, type: "service" },
      config: PluginConfig.none,
      // @ts-expect-error a service plugin without services does not compile
      program: Effect.succeed({ services: [] as const })
    })
  })

  it("a manifest type must match the constructor", () => {
    Plugin.integration({
      manifest: { ...manifest, type: "integration" },
      config: PluginConfig.none,
      program: Effect.succeed({ integration: { kind: "x", sync: Effect.void } })
    })
    Plugin.integration({
      // @ts-expect-error a service manifest given to Plugin.integration does not compile
      manifest: { ...manifest, type: "service" },
      config: PluginConfig.none,
      program: Effect.succeed({ integration: { kind: "x", sync: Effect.void } })
    })
  })

  it("a program may require only context services", () => {
    class Database extends Context.Tag("Database")<Database, { readonly query: Effect.Effect<number> }>() {}
    Plugin.integration({
      manifest: { ...manifest, type: "integration" },
      config: PluginConfig.none,
      program: Effect.map(Services.Services, () => ({ integration: { kind: "x", sync: Effect.void } }))
    })
    Plugin.integration({
      manifest: { ...manifest, type: "integration" },
      config: PluginConfig.none,
      // @ts-expect-error a program requiring a service the host does not provide does not compile
      program: Effect.map(Database, () => ({ integration: { kind: "x", sync: Effect.void } }))
    })
  })
})

describe("service contracts are types", () => {
  it("every method must be implemented, with its own types", () => {
    ServiceContract.implement(Greeter, {
      greet: ({ name }) => Effect.succeed(name),
      lookup: () => Effect.succeed(1)
    })
    // @ts-expect-error a handler missing from the contract does not compile
    ServiceContract.implement(Greeter, { greet: ({ name }) => Effect.succeed(name) })
    ServiceContract.implement(Greeter, {
      // @ts-expect-error a handler returning the wrong type does not compile
      greet: () => Effect.succeed(42),
      lookup: () => Effect.succeed(1)
    })
    ServiceContract.implement(Greeter, {
      greet: ({ name }) => Effect.succeed(name),
      // @ts-expect-error a handler failing with an error the contract does not declare does not compile
      lookup: () => Effect.fail("nope")
    })
  })

  it("a client takes the contract's payloads and returns its results and errors", () =>
    Effect.gen(function* () {
      const greeter = yield* Services.client(Greeter)
      const greeting = greeter.greet({ name: "Ada" })
      expectTypeOf(greeting).toMatchTypeOf<Effect.Effect<string, unknown>>()
      // @ts-expect-error a wrong payload to a service client does not compile
      greeter.greet({ name: 42 })
      // @ts-expect-error a method the contract lacks does not compile
      greeter.farewell({ name: "Ada" })
      const lookup = greeter.lookup({ key: "x" })
      expectTypeOf(lookup).toMatchTypeOf<
        Effect.Effect<number, NotFound | ServiceContract.MethodError | unknown>
      >()
      type LookupError = Effect.Effect.Error<typeof lookup>
      expectTypeOf<NotFound>().toMatchTypeOf<LookupError>()
    }))
})

describe("config and hooks are typed", () => {
  const Config = PluginConfig.make(
    Schema.Struct({ intervalSeconds: Schema.optionalWith(Schema.Number, { default: () => 60 }) })
  )

  it("a config is read with its schema's type", () =>
    Effect.gen(function* () {
      const config = yield* Config
      const seconds: number = config.intervalSeconds
      // @ts-expect-error a config read with the wrong type does not compile
      const asText: string = config.intervalSeconds
      // @ts-expect-error a field the schema lacks does not compile
      config.retention
      return [seconds, asText]
    }))

  it("a built-in hook's handler gets that hook's payload", () => {
    Hooks.register("storage.before.write", (write) => {
      expectTypeOf(write.value).toEqualTypeOf<Uint8Array>()
      return write.key.startsWith("x") ? Hooks.veto("no") : Effect.void
    })
    // @ts-expect-error a storage.before.delete payload has no value
    Hooks.register("storage.before.delete", (del) => Effect.succeed(del.value))
    Hooks.register("storage.before.delete", (del) => Effect.succeed(del.key).pipe(Effect.asVoid))
  })
})
