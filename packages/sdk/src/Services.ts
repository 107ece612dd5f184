/**
 * Typed clients for services on the internal mesh. Every call a plugin makes
 * is checked against its grants (`service:<name>:<method>` or
 * `service:<name>:<access class>`) before it reaches the service.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type { MeshError } from "./Errors.js"
import type * as ServiceContract from "./ServiceContract.js"

/** Context service: the mesh as a plugin sees it. */
export class Services extends Context.Tag("@blackhole/sdk/Services")<
  Services,
  {
    /** A typed client for the service that implements `contract` (resolved per call, so restarts are transparent). */
    readonly client: <C extends ServiceContract.Any>(contract: C) => ServiceContract.Client<C>
    /** An untyped call with an encoded payload, for tools and bridges. */
    readonly call: (
      service: string,
      method: string,
      payload: unknown
    ) => Effect.Effect<unknown, MeshError | ServiceContract.MethodError>
  }
>() {}

/** A typed client for `contract`. */
export const client = <C extends ServiceContract.Any>(
  contract: C
): Effect.Effect<ServiceContract.Client<C>, never, Services> =>
  Effect.map(Services, (services) => services.client(contract))
