/**
 * The internal service mesh. Core services, in-process plugins and subprocess
 * plugins register a name with a contract and a `Dispatch`; callers get typed
 * clients by contract. Every call from a plugin is checked against its grants
 * (`service:<name>:<method>` or `service:<name>:<access class>`) and passes
 * the `service.before.call` hooks before it reaches the service.
 */

import * as CancellableCall from "@blackhole/sdk/CancellableCall"
import type { MeshError } from "@blackhole/sdk/Errors"
import {
  MethodNotFound,
  PermissionDenied,
  PluginUnavailable,
  ServiceNameTaken,
  ServiceNotFound
} from "@blackhole/sdk/Errors"
import * as Permission from "@blackhole/sdk/Permission"
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { identity } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import type * as Scope from "effect/Scope"
import { HookRegistry } from "./HookRegistry.js"
import * as MeshTracing from "./MeshTracing.js"
import * as NodeMetrics from "./NodeMetrics.js"
import * as Principal from "./Principal.js"

/**
 * A dispatch that answers through a callback instead of an Effect, for a service served in another
 * process (the subprocess loader's Call/Reply frames). It bounds every call itself and returns a
 * function that cancels the call (its caller was interrupted); `done` is called at most once, and
 * never after the cancel.
 */
export type DirectDispatch = (
  method: string,
  payload: unknown,
  done: (exit: Exit.Exit<unknown, MeshError | ServiceContract.MethodError>) => void
) => () => void

/** How a service is registered. */
export interface RegisterOptions {
  /**
   * The dispatch bounds every call by itself (the subprocess fast path has a deadline per call),
   * so the mesh does not add its own timeout on top: that costs a fiber per call.
   */
  readonly selfTimed?: boolean
  /**
   * The same service as a callback dispatch (implies `selfTimed`). While no `service.before.call`
   * hook is registered and tracing is off, the mesh runs a call to it as one `Effect.async` with
   * the permission check, metrics and dispatch inside: the per-call path without fibers or
   * combinators of the mesh's own. Such a service never reads the caller's fiber context.
   */
  readonly direct?: DirectDispatch
}

/** A registered service. */
export interface Registration {
  readonly name: string
  readonly selfTimed: boolean
  /** `core` or the id of the plugin that registered it. */
  readonly owner: string
  readonly contract: ServiceContract.Any
  readonly dispatch: ServiceContract.Dispatch
  readonly direct: DirectDispatch | undefined
}

/** The mesh. */
export class ServiceRegistry extends Context.Tag("@blackhole/core/ServiceRegistry")<
  ServiceRegistry,
  {
    /** Registers until the Scope closes. Core names are reserved for owner `core`; a taken name is refused. */
    readonly register: (
      contract: ServiceContract.Any,
      dispatch: ServiceContract.Dispatch,
      owner: string,
      options?: RegisterOptions
    ) => Effect.Effect<void, ServiceNameTaken, Scope.Scope>
    /** Calls a method with an encoded payload, as `principal`. */
    readonly call: (
      principal: Principal.Principal,
      service: string,
      method: string,
      payload: unknown
    ) => Effect.Effect<unknown, MeshError | ServiceContract.MethodError>
    /** A typed client calling as `principal`. */
    readonly client: <C extends ServiceContract.Any>(
      principal: Principal.Principal,
      contract: C
    ) => ServiceContract.Client<C>
    readonly lookup: (name: string) => Option.Option<Registration>
    /**
     * Declares that `owner` provides `name` when it runs (a plugin's manifest `services`): while it
     * is not registered, calls get PluginUnavailable with the owner's state instead of
     * ServiceNotFound. Until the Scope closes.
     */
    readonly declare: (
      name: string,
      owner: string,
      state: () => string
    ) => Effect.Effect<void, never, Scope.Scope>
    readonly list: Effect.Effect<ReadonlyArray<Registration>>
  }
>() {}

/** What the mesh needs per method of a registered service, worked out once at registration. */
interface Operation {
  /** `service:<name>:<method>` */
  readonly permission: string
  /** `service:<name>:<access class>` */
  readonly classPermission: string
  readonly record: NodeMetrics.CallRecorder
}

/** A registration as the mesh keeps it: with its methods worked out once. */
interface Entry extends Registration {
  readonly operations: ReadonlyMap<string, Operation>
}

const operationsOf = (contract: ServiceContract.Any, owner: string): ReadonlyMap<string, Operation> => {
  const operations = new Map<string, Operation>()
  const service = contract.name
  for (const method of contract.group.requests.keys()) {
    const access = ServiceContract.accessOf(contract, method)
    if (access === undefined) continue
    operations.set(method, {
      permission: `service:${service}:${method}`,
      classPermission: `service:${service}:${access}`,
      record: NodeMetrics.callRecorder(owner, service, method)
    })
  }
  return operations
}

/** Options of the mesh. */
export interface Options {
  /** Upper bound of any one call; a call that takes longer fails with PluginUnavailable. Default 30 s. */
  readonly callTimeoutMillis?: number
}

/** What a failed call failed with, as a metric label: its error's tag, "interrupted" or "defect". */
const statusOf = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.failureOption(cause)
  if (failure._tag === "Some" && Predicate.hasProperty(failure.value, "_tag"))
    return String(failure.value._tag)
  return Cause.isInterruptedOnly(cause) ? "interrupted" : "defect"
}

/** A finished call's status label: "ok" or what it failed with. */
const outcomeOf = (exit: Exit.Exit<unknown, unknown>): string =>
  Exit.isSuccess(exit) ? "ok" : statusOf(exit.cause)

/** Seconds since a `performance.now()` reading. */
const secondsSince = (started: number): number => (performance.now() - started) / 1000

/** The mesh; needs the hook registry for `service.before.call`. */
export const layer = (options: Options = {}): Layer.Layer<ServiceRegistry, never, HookRegistry> =>
  Layer.effect(
    ServiceRegistry,
    Effect.gen(function* () {
      const hooks = yield* HookRegistry
      const services = new Map<string, Entry>()
      const declarations = new Map<string, { readonly owner: string; readonly state: () => string }>()
      const timeout = options.callTimeoutMillis ?? 30_000

      const register = (
        contract: ServiceContract.Any,
        dispatch: ServiceContract.Dispatch,
        owner: string,
        registerOptions?: RegisterOptions
      ) =>
        Effect.acquireRelease(
          Effect.suspend(() => {
            const name = contract.name
            const existing = services.get(name)
            if (existing !== undefined)
              return Effect.fail(new ServiceNameTaken({ service: name, owner: existing.owner }))
            if (Permission.isCoreService(name) && owner !== "core") {
              return Effect.fail(new ServiceNameTaken({ service: name, owner: "core (reserved name)" }))
            }
            const registration: Entry = {
              name,
              owner,
              contract,
              dispatch,
              selfTimed: registerOptions?.selfTimed === true || registerOptions?.direct !== undefined,
              direct: registerOptions?.direct,
              operations: operationsOf(contract, owner)
            }
            services.set(name, registration)
            return Effect.succeed(registration)
          }),
          (registration) =>
            Effect.sync(() => {
              // Only remove our own registration: a restarted plugin may have re-registered the name.
              if (services.get(registration.name) === registration) services.delete(registration.name)
            })
        ).pipe(Effect.asVoid)

      /**
       * The call as of now: looks the service up and checks the grant when called, not when run.
       * Only for callers that are themselves run lazily (the mesh's clients: a client method
       * suspends, then dispatches); `call` is this, suspended.
       */
      const callNow = (
        principal: Principal.Principal,
        service: string,
        method: string,
        payload: unknown
      ): Effect.Effect<unknown, MeshError | ServiceContract.MethodError> => {
        const registration = services.get(service)
        if (registration === undefined) {
          const declared = declarations.get(service)
          return Effect.fail(
            declared === undefined
              ? new ServiceNotFound({ service })
              : new PluginUnavailable({
                  pluginId: declared.owner,
                  state: declared.state(),
                  reason: `its service "${service}" is not serving now`
                })
          )
        }
        const operation = registration.operations.get(method)
        if (operation === undefined) return Effect.fail(new MethodNotFound({ service, method }))
        if (!Principal.allows(principal, operation.permission, operation.classPermission)) {
          return Effect.fail(
            new PermissionDenied({ permission: operation.permission, principal: Principal.name(principal) })
          )
        }
        const record = operation.record
        const direct = registration.direct
        if (direct !== undefined && !hooks.has("service.before.call") && !MeshTracing.isEnabled()) {
          return CancellableCall.make<unknown, MeshError | ServiceContract.MethodError>((done) => {
            const started = performance.now()
            const cancel = direct(method, payload, (exit) => {
              record(outcomeOf(exit), secondsSince(started))
              done(exit)
            })
            return () => {
              cancel()
              record("interrupted", secondsSince(started))
            }
          })
        }
        const started = performance.now()
        return hooks
          .run("service.before.call", { service, method, principal: Principal.name(principal), payload })
          .pipe(
            Effect.zipRight(
              // Suspended: the handler runs only once the hook let the call through.
              Effect.locally(
                Effect.suspend(() => registration.dispatch(method, payload)),
                Principal.current,
                principal
              )
            ),
            registration.selfTimed
              ? identity
              : Effect.timeoutFail({
                  duration: timeout,
                  onTimeout: () =>
                    new PluginUnavailable({
                      pluginId: registration.owner,
                      state: "running",
                      reason: `${service}.${method} did not answer within ${timeout} ms`
                    })
                }),
            MeshTracing.span(`mesh ${service}.${method}`, {
              "mesh.service": service,
              "mesh.method": method,
              "mesh.owner": registration.owner,
              "mesh.caller": Principal.name(principal)
            }),
            Effect.onExit((exit) => Effect.sync(() => record(outcomeOf(exit), secondsSince(started))))
          )
      }
      const call = (
        principal: Principal.Principal,
        service: string,
        method: string,
        payload: unknown
      ): Effect.Effect<unknown, MeshError | ServiceContract.MethodError> =>
        Effect.suspend(() => callNow(principal, service, method, payload))

      return ServiceRegistry.of({
        register,
        call,
        client: (principal, contract) =>
          ServiceContract.makeClient(contract, (method, payload) =>
            callNow(principal, contract.name, method, payload)
          ),
        lookup: (name) => Option.fromNullable(services.get(name)),
        declare: (name, owner, state) =>
          Effect.acquireRelease(
            Effect.sync(() => {
              const declaration = { owner, state }
              declarations.set(name, declaration)
              return declaration
            }),
            (declaration) =>
              Effect.sync(() => {
                if (declarations.get(name) === declaration) declarations.delete(name)
              })
          ).pipe(Effect.asVoid),
        list: Effect.sync(() => Array.from(services.values()))
      })
    })
  )
