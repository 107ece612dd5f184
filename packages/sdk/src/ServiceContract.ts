/**
 * Service contracts of the internal mesh. A contract is a name plus an
 * `RpcGroup` whose every method carries an access class (`read` | `write` |
 * `admin`) that permissions are checked against. A contract holds only
 * schemas, so a caller imports it without the implementation.
 *
 * Calls cross the mesh encoded (payload in, exit out, both through the
 * method's schemas): the same path serves in-process and subprocess
 * services, so a plugin cannot tell which it is talking to.
 */
import type * as Rpc from "@effect/rpc/Rpc"
import type * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { MeshError } from "./Errors.js"
import * as internal from "./internal/serviceContract.js"

/** The access class of a method; calling it needs `service:<name>:<method>` or `service:<name>:<class>`. */
export type AccessClass = "read" | "write" | "admin"

/** Rpc annotation carrying a method's access class. */
export class Access extends Context.Tag("@blackhole/sdk/ServiceContract/Access")<Access, AccessClass>() {}

type Annotatable = { annotate(tag: typeof Access, value: AccessClass): unknown }
const withAccess =
  (access: AccessClass) =>
  <R extends Rpc.Any>(rpc: R): R =>
    (rpc as unknown as Annotatable).annotate(Access, access) as R

/** Marks an rpc as a `read` method: granted on request, even for core services. */
export const read: <R extends Rpc.Any>(rpc: R) => R = withAccess("read")
/** Marks an rpc as a `write` method: on core services it needs the operator's grant. */
export const write: <R extends Rpc.Any>(rpc: R) => R = withAccess("write")
/** Marks an rpc as an `admin` method: on core services it needs the operator's grant. */
export const admin: <R extends Rpc.Any>(rpc: R) => R = withAccess("admin")

/** A named service contract. */
export interface ServiceContract<Name extends string, Rpcs extends Rpc.Any> {
  readonly _tag: "ServiceContract"
  readonly name: Name
  readonly group: RpcGroup.RpcGroup<Rpcs>
}

/** Any contract. */
// biome-ignore lint/suspicious/noExplicitAny: variance of RpcGroup requires `any` here
export type Any = ServiceContract<string, any>

/** The rpcs of a contract. */
export type Rpcs<C> = C extends ServiceContract<infer _N, infer R> ? R : never

/** Defines a contract. Fails at definition time if a method lacks an access class or streams. */
export const make = <const Name extends string, R extends Rpc.Any>(
  name: Name,
  group: RpcGroup.RpcGroup<R>
): ServiceContract<Name, R> => {
  internal.validateContract(name, group)
  return { _tag: "ServiceContract", name, group }
}

/** The access class a method declares. */
export const accessOf = (contract: Any, method: string): AccessClass | undefined =>
  internal.accessOf(contract, method)

/** A typed client: one function per method, failing with the method's errors or a mesh error. */
export type Client<C extends Any> = {
  readonly [R in Rpcs<C> as Rpc.Tag<R>]: (
    payload: Rpc.PayloadConstructor<R>
  ) => Effect.Effect<Rpc.Success<R>, Rpc.Error<R> | MeshError>
}

/** Handlers implementing every method of a contract; each must handle exactly its method's types. */
export type Handlers<C extends Any> = {
  readonly [R in Rpcs<C> as Rpc.Tag<R>]: (
    payload: Rpc.Payload<R>
  ) => Effect.Effect<Rpc.Success<R>, Rpc.Error<R>>
}

/** A contract together with its handlers: what a plugin registers on the mesh. */
export interface Implementation<C extends Any = Any> {
  readonly _tag: "Implementation"
  readonly contract: C
  readonly handlers: Handlers<C>
}

/** Implements a contract. A missing method or a handler of the wrong type is a compile error. */
export const implement = <C extends Any>(contract: C, handlers: NoInfer<Handlers<C>>): Implementation<C> => ({
  _tag: "Implementation",
  contract,
  handlers
})

/** A method's error, still encoded with the method's error schema, on its way to the caller. */
export class MethodError extends Schema.TaggedError<MethodError>()("MethodError", {
  service: Schema.String,
  method: Schema.String,
  error: Schema.Unknown
}) {}

/**
 * The wire-level form of a service: method name and encoded payload in,
 * encoded success out, failure as a mesh error or an encoded method error.
 */
export type Dispatch = (method: string, payload: unknown) => Effect.Effect<unknown, MeshError | MethodError>

/** Serves an implementation as a `Dispatch` (decode payload, run handler, encode result); `serverId` is named in failures. */
export const toDispatch: (implementation: Implementation, serverId: string) => Dispatch = internal.toDispatch

/**
 * Builds a typed client over a `Dispatch` (encode payload, call, decode result or error). The client
 * calls `dispatch` when a method's effect runs, once per run, never when the effect is built: a
 * dispatch may do its work when called instead of in the effect it returns.
 */
export const makeClient: <C extends Any>(contract: C, dispatch: Dispatch) => Client<C> = internal.makeClient
