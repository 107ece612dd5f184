/**
 * Hooks: named interception points `<area>.<phase>.<operation>`. A `before`
 * hook may veto the operation by failing with `Veto`; one that fails otherwise
 * or times out vetoes too (fail closed). An `after` hook that fails is logged
 * and the others still run. Hooks run in a stable order: priority, then
 * registration order.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { HookVetoed, PermissionDenied } from "./Errors.js"

/** A storage write as hooks see it. */
export const StorageWrite = Schema.Struct({
  namespace: Schema.String,
  key: Schema.String,
  value: Schema.Uint8ArrayFromBase64,
  /** Who is writing: a plugin id, `core` or `operator`. */
  principal: Schema.String
})
/** A storage delete as hooks see it. */
export const StorageDelete = Schema.Struct({
  namespace: Schema.String,
  key: Schema.String,
  principal: Schema.String
})
/** A mesh call as hooks see it (payload still encoded). */
export const ServiceCall = Schema.Struct({
  service: Schema.String,
  method: Schema.String,
  principal: Schema.String,
  payload: Schema.Unknown
})
/** A protocol message arriving from a peer. */
export const ProtocolMessage = Schema.Struct({
  protocol: Schema.String,
  peer: Schema.String,
  size: Schema.Number
})

/** The payload schema of each built-in hook; custom hooks carry any JSON value. */
export const payloads = {
  "storage.before.write": StorageWrite,
  "storage.after.write": StorageWrite,
  "storage.before.delete": StorageDelete,
  "storage.after.delete": StorageDelete,
  "service.before.call": ServiceCall,
  "protocol.before.message": ProtocolMessage
} as const

/** Built-in hook names. */
export type BuiltinHook = keyof typeof payloads

/** The payload type a hook of this name receives. */
export type PayloadOf<Name extends string> = Name extends BuiltinHook
  ? (typeof payloads)[Name]["Type"]
  : unknown

/** A hook's refusal; the host reports it to the caller as `HookVetoed` naming this plugin. */
export class Veto extends Schema.TaggedError<Veto>()("Veto", { reason: Schema.String }) {}

/** Registration options. */
export interface HookOptions {
  /** Lower runs first; equal priorities run in registration order. Default 0. */
  readonly priority?: number
  /** The hook's time budget; a `before` hook that exceeds it vetoes. Default from the node config (1 s). */
  readonly timeoutMillis?: number
}

/** A hook handler for hook `Name`. */
export type Handler<Name extends string> = (payload: PayloadOf<Name>) => Effect.Effect<void, Veto>

/** The areas of the hooks the node itself runs; a plugin runs only hooks of its own areas. */
export const builtinAreas: ReadonlyArray<string> = ["storage", "service", "protocol"]

/** Whether a hook name is one the node runs itself (a plugin may register on it, not run it). */
export const isBuiltin = (name: string): boolean => builtinAreas.includes(name.split(".")[0] ?? "")

/**
 * Context service: hook registration (`hooks:register:<name>`) and running a plugin's own
 * custom hooks (`hooks:run:<name>`, any area but the node's: e.g. `bookmarks.before.add`).
 */
export class Hooks extends Context.Tag("@blackhole/sdk/Hooks")<
  Hooks,
  {
    /** Registers `handler` on hook `name` until the Scope closes. */
    readonly register: <Name extends string>(
      name: Name,
      handler: Handler<Name>,
      options?: HookOptions
    ) => Effect.Effect<void, PermissionDenied, Scope.Scope>
    /**
     * Runs custom hook `name` with a JSON payload: every plugin registered on it, in order. A
     * `before` hook that refuses fails the run with `HookVetoed`; `after` hooks never fail it.
     */
    readonly run: (name: string, payload: unknown) => Effect.Effect<void, PermissionDenied | HookVetoed>
  }
>() {}

/** Runs one of this plugin's custom hooks (see `Hooks.run`). */
export const run = (name: string, payload: unknown) =>
  Effect.flatMap(Hooks, (hooks) => hooks.run(name, payload))

/** Registers a hook for the lifetime of the current Scope. */
export const register = <Name extends string>(name: Name, handler: Handler<Name>, options?: HookOptions) =>
  Effect.flatMap(Hooks, (hooks) => hooks.register(name, handler, options))

/** Fails with a `Veto`: the way a `before` hook refuses an operation. */
export const veto = (reason: string): Effect.Effect<never, Veto> => Effect.fail(new Veto({ reason }))
