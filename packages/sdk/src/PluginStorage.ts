/**
 * The plugin's own key/value namespace in the node's storage
 * (`storage:read`, `storage:write`). Other namespaces are reachable only
 * through the core `storage` service on the mesh.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { HookVetoed, PermissionDenied, QuotaExceeded, RateLimited, StorageError } from "./Errors.js"

/** Errors any storage read may fail with. */
export type ReadError = PermissionDenied | RateLimited | StorageError
/** Errors any storage write may fail with (hooks may veto writes). */
export type WriteError = PermissionDenied | RateLimited | QuotaExceeded | HookVetoed | StorageError

/** Context service: namespaced storage of bytes. */
export class PluginStorage extends Context.Tag("@blackhole/sdk/PluginStorage")<
  PluginStorage,
  {
    readonly store: (key: string, value: Uint8Array) => Effect.Effect<void, WriteError>
    readonly retrieve: (key: string) => Effect.Effect<Option.Option<Uint8Array>, ReadError>
    /** Succeeds with whether the key existed. */
    readonly delete: (key: string) => Effect.Effect<boolean, WriteError>
    /** Keys starting with `prefix`, sorted. */
    readonly list: (prefix?: string) => Effect.Effect<ReadonlyArray<string>, ReadError>
  }
>() {}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** Stores `value` encoded as JSON through `schema`. */
export const storeJson = <A, I>(key: string, schema: Schema.Schema<A, I>, value: A) =>
  Effect.gen(function* () {
    const storage = yield* PluginStorage
    const encoded = yield* Schema.encode(Schema.parseJson(schema))(value).pipe(Effect.orDie)
    yield* storage.store(key, encoder.encode(encoded))
  })

/** Retrieves a JSON value and decodes it with `schema`; a value that does not decode is a defect. */
export const retrieveJson = <A, I>(key: string, schema: Schema.Schema<A, I>) =>
  Effect.gen(function* () {
    const storage = yield* PluginStorage
    const bytes = yield* storage.retrieve(key)
    if (Option.isNone(bytes)) return Option.none<A>()
    const value = yield* Schema.decode(Schema.parseJson(schema))(decoder.decode(bytes.value)).pipe(
      Effect.orDie
    )
    return Option.some(value)
  })
