import type * as Rpc from "@effect/rpc/Rpc"
import * as RpcSchema from "@effect/rpc/RpcSchema"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { InvalidPayload, Issue, MethodNotFound, PluginFailure } from "../Errors.js"
import type * as ServiceContract from "../ServiceContract.js"
import { Access, MethodError } from "../ServiceContract.js"
import { fromParseError } from "./issues.js"

type AnyGroup = { readonly requests: ReadonlyMap<string, unknown> }

const rpcsOf = (group: AnyGroup): ReadonlyMap<string, Rpc.AnyWithProps> =>
  group.requests as unknown as ReadonlyMap<string, Rpc.AnyWithProps>

/** Service names share the manifest grammar so permissions can name them. */
const serviceName = /^[a-z][a-z0-9-]*$/

export const validateContract = (name: string, group: AnyGroup): void => {
  if (!serviceName.test(name)) {
    throw new Error(`service contract name "${name}" must match ${serviceName} (lowercase, digits, hyphens)`)
  }
  const problems: Array<string> = []
  for (const [tag, rpc] of rpcsOf(group)) {
    if (Context.getOption(rpc.annotations, Access)._tag === "None") {
      problems.push(`method "${tag}" has no access class: wrap it in ServiceContract.read/write/admin`)
    }
    if (RpcSchema.isStreamSchema(rpc.successSchema)) {
      problems.push(`method "${tag}" streams: mesh methods return one value (use events for streams)`)
    }
  }
  if (problems.length > 0)
    throw new Error(`invalid service contract "${name}":\n  - ${problems.join("\n  - ")}`)
}

export const accessOf = (
  contract: ServiceContract.Any,
  method: string
): ServiceContract.AccessClass | undefined => {
  const rpc = rpcsOf(contract.group).get(method)
  return rpc === undefined ? undefined : Context.getOrElse(rpc.annotations, Access, () => undefined)
}

const issuesOf = fromParseError

export const toDispatch = (
  implementation: ServiceContract.Implementation,
  serverId: string
): ServiceContract.Dispatch => {
  const service = implementation.contract.name
  const handlers = implementation.handlers as unknown as Record<
    string,
    (payload: unknown) => Effect.Effect<unknown, unknown>
  >
  // Compile each method's codecs once, not per call: this is the hot path.
  const methods = new Map<
    string,
    (payload: unknown) => Effect.Effect<unknown, ServiceContract.MethodError | InvalidPayload | PluginFailure>
  >()
  for (const [tag, rpc] of rpcsOf(implementation.contract.group)) {
    const handler = handlers[tag]
    if (handler === undefined) continue
    const decodePayload = Schema.decodeUnknown(rpc.payloadSchema as Schema.Schema<unknown, unknown>)
    const encodeSuccess = Schema.encode(rpc.successSchema as Schema.Schema<unknown, unknown>)
    const encodeError = Schema.encode(rpc.errorSchema as Schema.Schema<unknown, unknown>)
    const defect = (reason: string) =>
      new PluginFailure({ pluginId: serverId, reason: `${service}.${tag}: ${reason}` })
    methods.set(tag, (payload) =>
      decodePayload(payload).pipe(
        Effect.mapError((error) => new InvalidPayload({ service, method: tag, issues: issuesOf(error) })),
        Effect.flatMap((decoded) => handler(decoded)),
        Effect.matchCauseEffect({
          onSuccess: (value) =>
            Effect.mapError(encodeSuccess(value), (error) =>
              defect(`result does not match its schema: ${error.message}`)
            ),
          onFailure: (
            cause
          ): Effect.Effect<never, ServiceContract.MethodError | InvalidPayload | PluginFailure> => {
            const failure = Cause.failureOption(cause)
            if (failure._tag === "Some") {
              const error = failure.value
              if (error instanceof InvalidPayload) return Effect.fail(error)
              return encodeError(error).pipe(
                Effect.mapError((e) => defect(`error does not match its schema: ${e.message}`)),
                Effect.flatMap((encoded) =>
                  Effect.fail(new MethodError({ service, method: tag, error: encoded }))
                )
              )
            }
            if (Cause.isInterruptedOnly(cause)) return Effect.interrupt
            return Effect.fail(defect(Cause.pretty(cause)))
          }
        })
      )
    )
  }
  return (method, payload) => {
    const run = methods.get(method)
    return run === undefined ? Effect.fail(new MethodNotFound({ service, method })) : run(payload)
  }
}

export const makeClient = <C extends ServiceContract.Any>(
  contract: C,
  dispatch: ServiceContract.Dispatch
): ServiceContract.Client<C> => {
  const service = contract.name
  const client: Record<string, (payload: unknown) => Effect.Effect<unknown, unknown>> = {}
  for (const [tag, rpc] of rpcsOf(contract.group)) {
    const payloadSchema = rpc.payloadSchema as Schema.Schema<unknown, unknown>
    const encodePayload = Schema.encode(payloadSchema)
    const decodeSuccess = Schema.decodeUnknown(rpc.successSchema as Schema.Schema<unknown, unknown>)
    const decodeError = Schema.decodeUnknown(rpc.errorSchema as Schema.Schema<unknown, unknown>)
    // Struct payloads accept constructor input (like RpcClient); build the class instance when there is one.
    const construct = (input: unknown): unknown =>
      Schema.isSchema(payloadSchema) && "make" in payloadSchema && typeof payloadSchema.make === "function"
        ? (payloadSchema.make as (i: unknown) => unknown)(input ?? {})
        : input
    client[tag] = (input) =>
      Effect.try({ try: () => construct(input), catch: (error) => error }).pipe(
        Effect.flatMap(encodePayload),
        Effect.mapError((error) =>
          ParseResult.isParseError(error)
            ? new InvalidPayload({ service, method: tag, issues: issuesOf(error) })
            : new InvalidPayload({
                service,
                method: tag,
                issues: [new Issue({ path: "", message: String(error) })]
              })
        ),
        Effect.flatMap((encoded) => dispatch(tag, encoded)),
        Effect.flatMap((encoded) =>
          Effect.mapError(
            decodeSuccess(encoded),
            (error) =>
              new PluginFailure({
                pluginId: service,
                reason: `${tag} returned an invalid result: ${error.message}`
              })
          )
        ),
        Effect.catchTag("MethodError", (error) =>
          decodeError(error.error).pipe(
            Effect.mapError(
              (e) =>
                new PluginFailure({
                  pluginId: service,
                  reason: `${tag} failed with an undecodable error: ${e.message}`
                })
            ),
            Effect.flatMap(Effect.fail)
          )
        )
      )
  }
  return client as unknown as ServiceContract.Client<C>
}
