/**
 * The plugin testing kit (`@blackhole/sdk/testing`): in-memory context
 * services that record what a plugin published, stored, logged, registered
 * and called, so a plugin is unit-tested with a plain `it.effect`, with no
 * node and no subprocess.
 *
 * The fakes keep the host's rules where a test could otherwise pass for the
 * wrong reason: permissions are checked with `Permission.allows`, mesh calls
 * go through the encoded path (`ServiceContract.toDispatch`/`makeClient`),
 * storage copies bytes, events reach subscribers asynchronously, and the
 * config is decoded with the plugin's own schema (defaults applied).
 */
import * as fs from "node:fs"
import * as nodePath from "node:path"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type { InvalidConfig, PluginFailure, ServiceNameTaken } from "./Errors.js"
import type * as Hooks from "./Hooks.js"
import * as internal from "./internal/testing.js"
import type { NodeInfo } from "./NodeInfo.js"
import type * as Plugin from "./Plugin.js"
import * as PluginConfig from "./PluginConfig.js"
import type { Annotations, LogLevel } from "./PluginLogger.js"
import * as PluginManifest from "./PluginManifest.js"
import type * as ServiceContract from "./ServiceContract.js"

/** What the fakes recorded, plus the test's handles on the bus and the hooks (a Tag of `PluginTest.layer`). */
export class TestRecorder extends Context.Tag("@blackhole/sdk/testing/TestRecorder")<
  TestRecorder,
  TestRecorder.Service
>() {}

/** Types of the {@link TestRecorder} service. */
export declare namespace TestRecorder {
  /** An event the plugin published (the host would stamp the plugin id as its source). */
  export interface Published {
    readonly type: string
    readonly data: unknown
  }

  /** One successful change to the plugin's storage, in order. */
  export type Write =
    | { readonly _tag: "Store"; readonly key: string; readonly value: Uint8Array }
    | { readonly _tag: "Delete"; readonly key: string; readonly existed: boolean }

  /** A line the plugin logged through `PluginLogger`. */
  export interface LogLine {
    readonly level: LogLevel
    readonly message: string
    readonly annotations: Annotations
  }

  /** A mesh call the plugin made that passed the permission check; `payload` is encoded, as on the wire. */
  export interface Call {
    readonly service: string
    readonly method: string
    readonly payload: unknown
  }

  /** A hook the plugin has registered (and not yet unregistered by closing its Scope), in running order. */
  export interface HookRegistration {
    readonly name: string
    readonly priority: number
    /** The effective budget: the registration's, or the node default of 1 s. */
    readonly timeoutMillis: number
  }

  /** The recorder: snapshots of what happened, and ways for the test to act as the rest of the node. */
  export interface Service {
    /** Events the plugin published, in order (events injected with `emit` are not included). */
    readonly published: Effect.Effect<ReadonlyArray<Published>>
    /** The storage namespace as it is now, sorted by key (copies). */
    readonly stored: Effect.Effect<ReadonlyArray<readonly [key: string, value: Uint8Array]>>
    /** Every successful store and delete, in order. */
    readonly writes: Effect.Effect<ReadonlyArray<Write>>
    /** Every line the plugin logged, in order. */
    readonly logs: Effect.Effect<ReadonlyArray<LogLine>>
    /** Every mesh call the plugin made, in order. */
    readonly calls: Effect.Effect<ReadonlyArray<Call>>
    /** Hooks currently registered. */
    readonly hooks: Effect.Effect<ReadonlyArray<HookRegistration>>
    /** Patterns of the live event subscriptions. */
    readonly subscriptions: Effect.Effect<ReadonlyArray<string>>
    /** Events dropped because a subscription's bounded buffer was full. */
    readonly dropped: Effect.Effect<number>
    /** Puts an event on the bus as if another plugin (`source`, default `test`) had published it. */
    readonly emit: (type: string, data?: unknown, source?: string) => Effect.Effect<void>
    /**
     * Runs the handlers registered on hook `name` in the host's order, with the payload as a subprocess
     * would receive it (built-in hooks' payloads go through their schema). `before` hooks stop at the first
     * failure, the others all run; fails with the first `Veto` (a defect or timeout is one too), also for
     * non-`before` hooks, whose failures the host only logs: a test should see them.
     */
    readonly runHook: <Name extends string>(
      name: Name,
      payload: Hooks.PayloadOf<Name>
    ) => Effect.Effect<void, Hooks.Veto>
  }
}

/** Types of {@link PluginTest}. */
export declare namespace PluginTest {
  /** How to build the in-memory context. Every field is optional. */
  export interface Options {
    /** The plugin under test: its schema decodes `config` and its manifest id is the default `pluginId`. */
    readonly definition?: Plugin.Any
    /** The raw config as an operator writes it, decoded like the host does (`PluginConfig.decode`: defaults apply). */
    readonly config?: unknown
    /**
     * Granted permissions, enforced as the host does. Default: every permission (`["*:*"]`; a bare `"*"`
     * is not a permission and is rejected). `"manifest"` grants exactly what the manifest requests.
     */
    readonly permissions?: ReadonlyArray<string> | "manifest"
    /** Fake mesh services the plugin may call; each is served through the encoded path, like the real mesh. */
    readonly services?: ReadonlyArray<ServiceContract.Implementation>
    /** Overrides of the node's identity; default nodeId `12D3KooWTestNode`, version `0.1.0`, environment `test`. */
    readonly nodeInfo?: Partial<Context.Tag.Service<NodeInfo>>
    /** The principal in permission errors and the source of published events; default the manifest id, else `test.plugin`. */
    readonly pluginId?: string
    /** Initial contents of the plugin's storage namespace. */
    readonly storage?: Iterable<readonly [key: string, value: Uint8Array]>
    /** Capacity of each subscription's buffer; beyond it events are dropped and counted, like the host. Default 1024. */
    readonly eventBuffer?: number
  }

  /** Options of `run`: the definition is its first argument. */
  export type RunOptions = Omit<Options, "definition">

  /** A started plugin: what its program returned, and the test's view of it. */
  export interface Running<T extends Plugin.PluginType> {
    /** The handlers the program returned. */
    readonly handlers: Plugin.HandlersByType[T]
    /** A typed client for one of the plugin's own services, called as the operator through the encoded path. */
    readonly client: <C extends ServiceContract.Any>(contract: C) => ServiceContract.Client<C>
    /** What the fakes recorded. */
    readonly recorder: TestRecorder.Service
  }
}

/** Builds and runs plugins against recording in-memory context services. */
export const PluginTest: {
  /** Every context service of `Plugin.ContextServices`, in memory, plus the `TestRecorder`; an undecodable config fails it. */
  readonly layer: (
    options?: PluginTest.Options
  ) => Layer.Layer<Plugin.ContextServices | TestRecorder, InvalidConfig>
  /**
   * Runs the definition's program in the caller's Scope (closing it is the plugin's Stop) and registers
   * the services it returned, refused like the host refuses them (undeclared in the manifest, or a taken name).
   */
  readonly run: <T extends Plugin.PluginType, A, I, E>(
    definition: Plugin.PluginDefinition<T, A, I, E>,
    options?: PluginTest.RunOptions
  ) => Effect.Effect<PluginTest.Running<T>, E | InvalidConfig | ServiceNameTaken | PluginFailure, Scope.Scope>
  /**
   * Retries `self` (a check that fails or throws) after yielding to other fibers, at most `maxYields`
   * times (default 1000): waits for asynchronous event delivery without real time, so tests stay deterministic.
   */
  readonly eventually: <A, E, R>(
    self: Effect.Effect<A, E, R>,
    options?: { readonly maxYields?: number }
  ) => Effect.Effect<A, E, R>
  /**
   * Where a plugin package's committed files disagree with its code: `plugin.json` against the
   * definition's manifest, and the `config.schema.json` it names against the config Schema. Empty when
   * they agree; each entry says what to regenerate. Assert it is `[]` in the package's tests.
   */
  readonly packageDrift: (directory: string, definition: Plugin.Any) => Effect.Effect<ReadonlyArray<string>>
} = {
  layer: internal.layer,
  run: internal.run,
  eventually: internal.eventually,
  packageDrift: (directory, definition) =>
    Effect.gen(function* () {
      const problems: Array<string> = []
      const file = (name: string) => nodePath.join(directory, name)
      const fromJson = yield* Effect.either(
        PluginManifest.decodeJson(fs.readFileSync(file("plugin.json"), "utf8"), file("plugin.json"))
      )
      const fromCode = yield* Effect.either(PluginManifest.decode(definition.manifest, "the definition"))
      if (fromJson._tag === "Left") problems.push(fromJson.left.message)
      if (fromCode._tag === "Left") problems.push(fromCode.left.message)
      if (fromJson._tag === "Right" && fromCode._tag === "Right") {
        const a = JSON.stringify(fromJson.right)
        const b = JSON.stringify(fromCode.right)
        if (a !== b)
          problems.push(
            `plugin.json differs from the definition's manifest:\n  plugin.json: ${a}\n  code:        ${b}`
          )
        const schemaFile = fromJson.right.configuration?.$schema
        if (schemaFile !== undefined) {
          const expected = JSON.stringify(PluginConfig.toJsonSchema(definition.config))
          const committed = fs.existsSync(file(schemaFile))
            ? JSON.stringify(JSON.parse(fs.readFileSync(file(schemaFile), "utf8")))
            : undefined
          if (committed !== expected) {
            problems.push(
              `${schemaFile} ${committed === undefined ? "is missing" : "is stale"}: regenerate it from the config Schema (PluginConfig.toJsonSchema; the package's \`schema\` script) and commit it`
            )
          }
        }
      }
      return problems
    })
}
