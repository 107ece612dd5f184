import { StorageError } from "@blackhole/sdk/Errors"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Order from "effect/Order"
import * as RedBlackTree from "effect/RedBlackTree"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"
import type { Entry, MemoryOptions, StorageBackend, WriteOp } from "../StorageBackend.js"

/**
 * Compares strings by Unicode code point, the order SQLite (UTF-8 bytes) uses, so both backends
 * list keys alike. JavaScript's `<` compares UTF-16 units, which puts astral characters (surrogate
 * pairs, U+D800–DFFF) before U+E000–FFFF; shifting those two ranges past each other fixes it.
 */
const codePointOrder: Order.Order<string> = (a, b) => {
  if (a === b) return 0
  const length = Math.min(a.length, b.length)
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i)
    const y = b.charCodeAt(i)
    if (x !== y) return fixup(x) < fixup(y) ? -1 : 1
  }
  return a.length < b.length ? -1 : 1
}

const fixup = (unit: number): number => (unit < 0xd800 ? unit : unit >= 0xe000 ? unit - 0x800 : unit + 0x2000)

type Keys = RedBlackTree.RedBlackTree<string, Uint8Array>

interface State {
  readonly namespaces: RedBlackTree.RedBlackTree<string, Keys>
  readonly usedBytes: number
}

const emptyKeys: Keys = RedBlackTree.empty(codePointOrder)
const emptyState: State = { namespaces: RedBlackTree.empty(codePointOrder), usedBytes: 0 }

// RedBlackTree keeps duplicate keys, so replacing a value means removing the old node first.
const setIn = <V>(tree: RedBlackTree.RedBlackTree<string, V>, key: string, value: V, exists: boolean) =>
  RedBlackTree.insert(exists ? RedBlackTree.removeFirst(tree, key) : tree, key, value)

const entryBytes = (namespace: string, key: string, value: Uint8Array): number =>
  Buffer.byteLength(namespace) + Buffer.byteLength(key) + value.byteLength

// `value` must already be a private copy: the state is shared with snapshots and never mutated.
const put = (state: State, namespace: string, key: string, value: Uint8Array): State => {
  const keys = RedBlackTree.findFirst(state.namespaces, namespace)
  const tree = Option.getOrElse(keys, () => emptyKeys)
  const previous = RedBlackTree.findFirst(tree, key)
  const usedBytes = Option.isSome(previous)
    ? state.usedBytes - previous.value.byteLength + value.byteLength
    : state.usedBytes + entryBytes(namespace, key, value)
  return {
    namespaces: setIn(
      state.namespaces,
      namespace,
      setIn(tree, key, value, Option.isSome(previous)),
      Option.isSome(keys)
    ),
    usedBytes
  }
}

const remove = (state: State, namespace: string, key: string): State | undefined => {
  const keys = RedBlackTree.findFirst(state.namespaces, namespace)
  if (Option.isNone(keys)) return undefined
  const previous = RedBlackTree.findFirst(keys.value, key)
  if (Option.isNone(previous)) return undefined
  const tree = RedBlackTree.removeFirst(keys.value, key)
  // Dropping empty namespaces keeps snapshots and the tree free of dead nodes.
  const namespaces =
    RedBlackTree.size(tree) === 0
      ? RedBlackTree.removeFirst(state.namespaces, namespace)
      : setIn(state.namespaces, namespace, tree, true)
  return { namespaces, usedBytes: state.usedBytes - entryBytes(namespace, key, previous.value) }
}

// Entries of `tree` from `prefix` on, while their key still starts with it: keys sharing a prefix
// are contiguous in code point order, so the first miss ends the range.
function* withPrefix<V>(tree: RedBlackTree.RedBlackTree<string, V>, prefix: string): Generator<[string, V]> {
  const range = prefix === "" ? tree : RedBlackTree.greaterThanEqual(tree, prefix)
  for (const entry of range) {
    if (!entry[0].startsWith(prefix)) return
    yield entry
  }
}

function* entries(state: State, namespacePrefix: string): Generator<Entry> {
  for (const [namespace, keys] of withPrefix(state.namespaces, namespacePrefix)) {
    for (const [key, value] of keys) yield { namespace, key, value: new Uint8Array(value) }
  }
}

/** @internal */
export const make = (options: MemoryOptions = {}): Effect.Effect<StorageBackend.Service> =>
  Effect.map(Ref.make(emptyState), (ref): StorageBackend.Service => {
    const maxBytes = options.maxBytes

    // Applies a pure transition atomically; refuses it when it would grow past `maxBytes`
    // (shrinking writes are allowed even when over the limit, so a full store can be emptied).
    const update = (operation: string, f: (state: State) => State): Effect.Effect<void, StorageError> =>
      Effect.flatten(
        Ref.modify(ref, (state): readonly [Effect.Effect<void, StorageError>, State] => {
          const next = f(state)
          if (maxBytes !== undefined && next.usedBytes > maxBytes && next.usedBytes > state.usedBytes) {
            const reason = `storage is full: ${next.usedBytes} bytes needed, limit ${maxBytes}`
            return [Effect.fail(new StorageError({ operation, reason })), state]
          }
          return [Effect.void, next]
        })
      )

    return {
      // Copies on the way in and out: callers keep their arrays, and the stored bytes stay immutable.
      store: (namespace, key, value) =>
        update("store", (state) => put(state, namespace, key, new Uint8Array(value))),
      retrieve: (namespace, key) =>
        Effect.map(Ref.get(ref), (state) =>
          RedBlackTree.findFirst(state.namespaces, namespace).pipe(
            Option.flatMap((keys) => RedBlackTree.findFirst(keys, key)),
            Option.map((value) => new Uint8Array(value))
          )
        ),
      delete: (namespace, key) =>
        Ref.modify(ref, (state): readonly [boolean, State] => {
          const next = remove(state, namespace, key)
          return next === undefined ? [false, state] : [true, next]
        }),
      list: (namespace, prefix) =>
        Effect.map(Ref.get(ref), (state) =>
          Option.match(RedBlackTree.findFirst(state.namespaces, namespace), {
            onNone: () => [],
            onSome: (keys) => Array.from(withPrefix(keys, prefix), ([key]) => key)
          })
        ),
      capacity: Effect.map(Ref.get(ref), (state) => ({
        usedBytes: state.usedBytes,
        totalBytes: maxBytes ?? null
      })),
      // One Ref transition for the whole batch, so it is applied entirely or not at all.
      batch: (ops: ReadonlyArray<WriteOp>) => {
        const copied = ops.map((op) => (op._tag === "Put" ? { ...op, value: new Uint8Array(op.value) } : op))
        return update("batch", (initial) =>
          copied.reduce(
            (state, op) =>
              op._tag === "Put"
                ? put(state, op.namespace, op.key, op.value)
                : (remove(state, op.namespace, op.key) ?? state),
            initial
          )
        )
      },
      // The state is immutable, so the one read of the Ref is the point-in-time view.
      snapshot: (namespacePrefix = "") =>
        Stream.unwrap(
          Effect.map(Ref.get(ref), (state) => Stream.fromIterable(entries(state, namespacePrefix)))
        )
    }
  })
