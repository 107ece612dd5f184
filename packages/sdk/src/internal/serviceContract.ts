import type * as Rpc from "@effect/rpc/Rpc"
import * as RpcSchema from "@effect/rpc/RpcSchema"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import type * as ParseResult from "effect/ParseResult"
import * as Predicate from "effect/Predicate"
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

/**
 * Runs a parser that may answer synchronously: Schema's parsers return an `Either` when every
 * step is synchronous (nearly always), which is read here without entering the Effect runtime.
 */
const parseWith =
  <E>(
    parse: (input: unknown) => Effect.Effect<unknown, ParseResult.ParseError>,
    onError: (error: ParseResult.ParseError) => E
  ) =>
  (input: unknown): Effect.Effect<unknown, E> => {
    const result = parse(input)
    if (Either.isEither(result)) {
      const parsed = result as Either.Either<unknown, ParseResult.ParseError>
      return Either.isRight(parsed) ? Effect.succeed(parsed.right) : Effect.fail(onError(parsed.left))
    }
    return Effect.mapError(result, onError)
  }

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
    const defect = (reason: string) =>
      new PluginFailure({ pluginId: serverId, reason: `${service}.${tag}: ${reason}` })
    const decodePayload = parseWith(
      Schema.decodeUnknown(rpc.payloadSchema as Schema.Schema<unknown, unknown>),
      (error) => new InvalidPayload({ service, method: tag, issues: issuesOf(error) })
    )
    const encodeSuccess = parseWith(
      Schema.encode(rpc.successSchema as Schema.Schema<unknown, unknown>),
      (error) => defect(`result does not match its schema: ${error.message}`)
    )
    const encodeError = parseWith(
      Schema.encode(rpc.errorSchema as Schema.Schema<unknown, unknown>),
      (error) => defect(`error does not match its schema: ${error.message}`)
    )
    const onFailure = (
      cause: Cause.Cause<unknown>
    ): Effect.Effect<never, ServiceContract.MethodError | InvalidPayload | PluginFailure> => {
      const failure = Cause.failureOption(cause)
      if (failure._tag === "Some") {
        const error = failure.value
        if (error instanceof InvalidPayload) return Effect.fail(error)
        return Effect.flatMap(encodeError(error), (encoded) =>
          Effect.fail(new MethodError({ service, method: tag, error: encoded }))
        )
      }
      if (Cause.isInterruptedOnly(cause)) return Effect.interrupt
      return Effect.fail(defect(Cause.pretty(cause)))
    }
    const settle = { onSuccess: encodeSuccess, onFailure }
    methods.set(tag, (payload) => {
      const decoded = decodePayload(payload)
      if (!Exit.isExit(decoded)) return Effect.matchCauseEffect(Effect.flatMap(decoded, handler), settle)
      if (Exit.isFailure(decoded)) return onFailure(decoded.cause)
      // A handler whose effect is already complete (`Effect.succeed`: an Exit) is settled here, so
      // the whole dispatch is an Exit too and its caller needs no fiber to run it.
      let handled: Effect.Effect<unknown, unknown>
      try {
        handled = handler(decoded.value)
      } catch (error) {
        return onFailure(Cause.die(error))
      }
      if (!Exit.isExit(handled)) return Effect.matchCauseEffect(handled, settle)
      return Exit.isSuccess(handled) ? encodeSuccess(handled.value) : onFailure(handled.cause)
    })
  }
  return (method, payload) => {
    const run = methods.get(method)
    return run === undefined ? Effect.fail(new MethodNotFound({ service, method })) : run(payload)
  }
}

/**
 * How a client builds a payload from constructor input, worked out once per method: a Struct or
 * class called without input gets `{}` (its fields may all be optional); its `make` runs only when
 * it has constructor defaults or is a class — a plain Struct's would only copy the input (encoding
 * validates it either way); anything else passes as it is.
 */
const constructorOf = (schema: Schema.Schema<unknown, unknown>): ((input: unknown) => unknown) => {
  if (!("make" in schema) || typeof schema.make !== "function") return (input) => input
  const make = schema.make as (input: unknown, options: { disableValidation: true }) => unknown
  const construct = (input: unknown) => make(input ?? {}, { disableValidation: true })
  if (schema.ast._tag !== "TypeLiteral" || !("fields" in schema)) return construct
  const fields = schema.fields as Schema.Struct.Fields
  const hasDefault = Reflect.ownKeys(fields).some((key) => {
    const field = fields[key as string]
    if (!Schema.isPropertySignature(field)) return false
    const ast = field.ast
    return (
      (ast._tag === "PropertySignatureDeclaration" ? ast.defaultValue : ast.to.defaultValue) !== undefined
    )
  })
  return hasDefault ? construct : (input) => input ?? {}
}

export const makeClient = <C extends ServiceContract.Any>(
  contract: C,
  dispatch: ServiceContract.Dispatch
): ServiceContract.Client<C> => {
  const service = contract.name
  const client: Record<string, (payload: unknown) => Effect.Effect<unknown, unknown>> = {}
  for (const [tag, rpc] of rpcsOf(contract.group)) {
    const payloadSchema = rpc.payloadSchema as Schema.Schema<unknown, unknown>
    const invalidPayload = (error: ParseResult.ParseError) =>
      new InvalidPayload({ service, method: tag, issues: issuesOf(error) })
    const encodePayload = parseWith(Schema.encodeUnknown(payloadSchema), invalidPayload)
    const decodeSuccess = parseWith(
      Schema.decodeUnknown(rpc.successSchema as Schema.Schema<unknown, unknown>),
      (error) =>
        new PluginFailure({
          pluginId: service,
          reason: `${tag} returned an invalid result: ${error.message}`
        })
    )
    const decodeError = parseWith(
      Schema.decodeUnknown(rpc.errorSchema as Schema.Schema<unknown, unknown>),
      (error) =>
        new PluginFailure({
          pluginId: service,
          reason: `${tag} failed with an undecodable error: ${error.message}`
        })
    )
    // Struct payloads accept constructor input (like RpcClient), and build the class instance when
    // there is one.
    const construct = constructorOf(payloadSchema)
    const afterFailure = (error: unknown): Effect.Effect<never, unknown> =>
      Predicate.isTagged(error, "MethodError")
        ? Effect.flatMap(decodeError((error as MethodError).error), Effect.fail)
        : Effect.fail(error)
    const call = (encoded: unknown) =>
      Effect.matchEffect(dispatch(tag, encoded), { onSuccess: decodeSuccess, onFailure: afterFailure })
    client[tag] = (input) =>
      Effect.suspend(() => {
        let constructed: unknown
        try {
          constructed = construct(input)
        } catch (error) {
          return Effect.fail(
            new InvalidPayload({
              service,
              method: tag,
              issues: [new Issue({ path: "", message: String(error) })]
            })
          )
        }
        const encoded = encodePayload(constructed)
        // Encoding is nearly always synchronous (an Exit): call straight on, without a flatMap.
        if (!Exit.isExit(encoded)) return Effect.flatMap(encoded, call)
        return Exit.isSuccess(encoded) ? call(encoded.value) : encoded
      })
  }
  return client as unknown as ServiceContract.Client<C>
}
