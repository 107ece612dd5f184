/** Helpers shared by the backup plugin's tests. */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as CoreServices from "@blackhole/sdk/CoreServices"
import { StorageError } from "@blackhole/sdk/Errors"
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

/** A fresh temp directory, removed when the Scope closes. */
export const tempDir: Effect.Effect<string, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "bh-backup-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

const encoder = new TextEncoder()
const decoder = new TextDecoder()
/** UTF-8 bytes of `text`. */
export const bytes = (text: string): Uint8Array => encoder.encode(text)
/** `bytes` back to text. */
export const text = (value: Uint8Array): string => decoder.decode(value)

/** Polls `probe` until it yields a value (bounded: 15 s), for asynchronous effects in live tests. */
export const eventually = <A, E, R>(probe: Effect.Effect<A | undefined, E, R>, what: string) =>
  Effect.gen(function* () {
    for (let i = 0; i < 1500; i++) {
      const value = yield* probe
      if (value !== undefined) return value
      yield* Effect.sleep("10 millis")
    }
    return yield* Effect.dieMessage(`not reached within 15 s: ${what}`)
  })

/**
 * An in-memory stand-in for the core `storage` service: a sorted map of
 * `(namespace, key)` whose snapshot is a copy taken at once. `failWith` makes
 * every snapshot fail until cleared.
 */
export const fakeStorage = (
  initial: Iterable<readonly [namespace: string, key: string, value: string]> = []
) => {
  const data = new Map<string, CoreServices.Entry>()
  const id = (namespace: string, key: string) => `${namespace}\u0000${key}`
  const put = (namespace: string, key: string, value: Uint8Array) =>
    data.set(id(namespace, key), { namespace, key, value: new Uint8Array(value) })
  for (const [namespace, key, value] of initial) put(namespace, key, bytes(value))
  const state = { failWith: undefined as string | undefined, batches: 0 }
  const sorted = () =>
    [...data.entries()].sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b))).map(([, e]) => e)
  const implementation = ServiceContract.implement(CoreServices.Storage, {
    retrieve: ({ namespace, key }) => Effect.sync(() => data.get(id(namespace, key))?.value ?? null),
    list: ({ namespace, prefix }) =>
      Effect.sync(() =>
        sorted()
          .filter((e) => e.namespace === namespace && e.key.startsWith(prefix))
          .map((e) => e.key)
      ),
    capacity: () => Effect.succeed({ usedBytes: 0, totalBytes: null }),
    snapshot: ({ namespacePrefix }) =>
      Effect.suspend(() =>
        state.failWith !== undefined
          ? Effect.fail(new StorageError({ operation: "snapshot", reason: state.failWith }))
          : Effect.succeed(sorted().filter((e) => e.namespace.startsWith(namespacePrefix ?? "")))
      ),
    store: ({ namespace, key, value }) => Effect.sync(() => void put(namespace, key, value)),
    delete: ({ namespace, key }) => Effect.sync(() => data.delete(id(namespace, key))),
    batch: ({ ops }) =>
      Effect.sync(() => {
        state.batches++
        for (const op of ops) {
          if (op._tag === "Put") put(op.namespace, op.key, op.value)
          else data.delete(id(op.namespace, op.key))
        }
      })
  })
  return {
    implementation,
    state,
    put: (namespace: string, key: string, value: string) => void put(namespace, key, bytes(value)),
    remove: (namespace: string, key: string) => void data.delete(id(namespace, key)),
    get: (namespace: string, key: string) => {
      const entry = data.get(id(namespace, key))
      return entry === undefined ? undefined : text(entry.value)
    },
    clear: () => data.clear(),
    size: () => data.size
  }
}
