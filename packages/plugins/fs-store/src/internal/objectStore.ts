/**
 * A content-addressed key/value store in a directory:
 *
 *   objects/<first 2 hex>/<sha256 hex>   a value's bytes, stored once however many keys hold it
 *   keys/<name>                          "<sha256 hex>\n<key>": which object a key holds
 *   tmp/                                 files being written (emptied at open)
 *
 * `<name>` is `k` + base64url(UTF-8 key) when that is at most 200 characters, else `h` +
 * sha256(UTF-8 key); the key itself is always in the file, so names never need decoding.
 *
 * Every file is written as temp file + fsync + rename + fsync of its directory, object before
 * key, and an object is unlinked only after the last key file naming it is gone. So a crash
 * at any point leaves each key holding its old or its new value, never a missing one; what it
 * can leave behind is an unreferenced object, removed at the next open. The key files are the
 * truth; an in-memory index built from them at open serves `retrieve` and `list`.
 */
import * as crypto from "node:crypto"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { type Capacity, StorageFailure } from "@blackhole/sdk/Plugin"
import * as Effect from "effect/Effect"
import type { CheckReport, Stats } from "../contract.js"

/** The store: the storage plugin contract plus the operator views. */
export interface ObjectStore {
  readonly store: (key: string, value: Uint8Array) => Effect.Effect<void, StorageFailure>
  readonly retrieve: (key: string) => Effect.Effect<Uint8Array | undefined, StorageFailure>
  readonly delete: (key: string) => Effect.Effect<boolean, StorageFailure>
  readonly list: (prefix: string) => Effect.Effect<ReadonlyArray<string>, StorageFailure>
  readonly capacity: Effect.Effect<Capacity, StorageFailure>
  readonly stats: Effect.Effect<Stats>
  readonly check: Effect.Effect<CheckReport>
  /** Problems found at open or since (missing or damaged objects); empty while the store is sound. */
  readonly damage: Effect.Effect<ReadonlyArray<string>>
}

/** What `open` found besides the store. */
export interface Opened {
  readonly store: ObjectStore
  /** Unreferenced objects and stray files left by a crash, removed at open. */
  readonly removed: number
}

const longName = 200

const sha256 = (data: Uint8Array | string): string => crypto.createHash("sha256").update(data).digest("hex")

/** The key file name for `key` (see the module comment). */
export const keyFileName = (key: string): string => {
  const encoded = Buffer.from(key, "utf8").toString("base64url")
  return encoded.length <= longName ? `k${encoded}` : `h${sha256(key)}`
}

// A lone surrogate has no UTF-8 form: two such keys would collide on disk.
const loneSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/

// Code point order, as the node's own backends list keys: UTF-16 units order surrogates
// (code points past U+FFFF) before U+E000–U+FFFF, so those two ranges swap places.
const rank = (unit: number): number =>
  unit >= 0xd800 && unit <= 0xdfff ? unit + 0x2000 : unit >= 0xe000 ? unit - 0x800 : unit

/** Compares strings by Unicode code point. */
export const compareKeys = (a: string, b: string): number => {
  const length = Math.min(a.length, b.length)
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i)
    const y = b.charCodeAt(i)
    if (x !== y) return rank(x) - rank(y)
  }
  return a.length - b.length
}

const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error))
const codeOf = (error: unknown): string | undefined =>
  typeof error === "object" && error !== null && "code" in error ? String(error.code) : undefined

const hashPattern = /^[0-9a-f]{64}$/

/** Opens (creating if needed) the store in `directory`, rebuilding its index from the key files. */
export const open = (options: {
  readonly directory: string
  readonly maxBytes?: number | undefined
}): Effect.Effect<Opened, StorageFailure> =>
  Effect.gen(function* () {
    const { directory, maxBytes } = options
    const objectsDir = path.join(directory, "objects")
    const keysDir = path.join(directory, "keys")
    const tmpDir = path.join(directory, "tmp")

    const io = <A>(operation: string, run: () => Promise<A>): Effect.Effect<A, StorageFailure> =>
      Effect.tryPromise({
        try: run,
        catch: (error) =>
          new StorageFailure({ operation, reason: `${messageOf(error)} (under ${directory})` })
      })

    const objectPath = (hash: string) => path.join(objectsDir, hash.slice(0, 2), hash)
    const keyPath = (key: string) => path.join(keysDir, keyFileName(key))

    // --- the index (rebuilt from the key files; changed only after the files are durable)
    const index = new Map<string, string>()
    const refs = new Map<string, number>()
    const sizes = new Map<string, number>()
    const damage: Array<string> = []
    let usedBytes = 0
    let logicalBytes = 0

    const syncDir = async (dir: string) => {
      const handle = await fsp.open(dir, "r")
      try {
        await handle.sync()
      } finally {
        await handle.close()
      }
    }

    let tempCounter = 0
    /** Writes `data` durably at `target`: temp file, fsync, rename, fsync of the target's directory. */
    const writeDurably = async (target: string, data: Uint8Array | string) => {
      const temp = path.join(tmpDir, `${process.pid}-${++tempCounter}`)
      const handle = await fsp.open(temp, "w", 0o600)
      try {
        await handle.writeFile(data)
        await handle.sync()
      } catch (error) {
        await handle.close().catch(() => undefined)
        await fsp.rm(temp, { force: true })
        throw error
      }
      await handle.close()
      try {
        await fsp.rename(temp, target)
      } catch (error) {
        await fsp.rm(temp, { force: true })
        throw error
      }
      await syncDir(path.dirname(target))
    }

    // --- open: layout, leftovers, index, garbage
    yield* io("open", async () => {
      await fsp.mkdir(directory, { recursive: true, mode: 0o700 })
      for (const dir of [objectsDir, keysDir, tmpDir]) await fsp.mkdir(dir, { recursive: true, mode: 0o700 })
    })
    let removed = yield* io("open", async () => {
      const temps = await fsp.readdir(tmpDir)
      for (const name of temps) await fsp.rm(path.join(tmpDir, name), { force: true, recursive: true })
      return temps.length
    })
    yield* io("open", async () => {
      for (const name of await fsp.readdir(keysDir)) {
        const file = path.join(keysDir, name)
        const content = await fsp.readFile(file, "utf8")
        const newline = content.indexOf("\n")
        const hash = content.slice(0, newline)
        const key = content.slice(newline + 1)
        // Not a key file this store wrote (or one damaged by hand): never guess, report it.
        if (newline < 0 || !hashPattern.test(hash) || keyFileName(key) !== name) {
          damage.push(`keys/${name} is not a valid key file; move it away`)
          continue
        }
        index.set(key, hash)
        refs.set(hash, (refs.get(hash) ?? 0) + 1)
      }
      for (const [hash, count] of refs) {
        try {
          const { size } = await fsp.stat(objectPath(hash))
          sizes.set(hash, size)
          usedBytes += size
          logicalBytes += size * count
        } catch {
          sizes.set(hash, 0)
          damage.push(`object ${hash} is missing (held by ${count} keys)`)
        }
      }
      // Objects no key names: a crash between writing an object and its key, or between a key's
      // removal and its object's.
      for (const prefix of await fsp.readdir(objectsDir)) {
        const dir = path.join(objectsDir, prefix)
        for (const name of await fsp.readdir(dir)) {
          if (refs.has(name)) continue
          await fsp.rm(path.join(dir, name), { force: true })
          removed++
        }
      }
    })

    // Writers one at a time: each step reads the index, writes files, then updates the index.
    const lock = yield* Effect.makeSemaphore(1)

    const validKey = (operation: string, key: string) =>
      loneSurrogate.test(key)
        ? Effect.fail(
            new StorageFailure({
              operation,
              reason: `key ${JSON.stringify(key)} contains a lone UTF-16 surrogate, which has no UTF-8 form; use well-formed text`
            })
          )
        : Effect.void

    /** Drops one reference to `hash`, unlinking the object when it was the last. */
    const release = (hash: string) =>
      Effect.gen(function* () {
        const count = (refs.get(hash) ?? 0) - 1
        const size = sizes.get(hash) ?? 0
        logicalBytes -= size
        if (count > 0) {
          refs.set(hash, count)
          return
        }
        refs.delete(hash)
        sizes.delete(hash)
        usedBytes -= size
        // An object left behind is only garbage: the next open removes it.
        yield* Effect.promise(() => fsp.rm(objectPath(hash), { force: true }).catch(() => undefined))
      })

    const store: ObjectStore["store"] = (key, value) =>
      Effect.flatMap(validKey("store", key), () =>
        lock.withPermits(1)(
          Effect.gen(function* () {
            const hash = sha256(value)
            const previous = index.get(key)
            if (previous === hash) return
            const fresh = !refs.has(hash)
            const size = value.byteLength
            if (maxBytes !== undefined) {
              const freed =
                previous !== undefined && refs.get(previous) === 1 ? (sizes.get(previous) ?? 0) : 0
              const after = usedBytes + (fresh ? size : 0) - freed
              if (after > maxBytes) {
                return yield* new StorageFailure({
                  operation: "store",
                  reason: `storing ${JSON.stringify(key)} (${size} bytes) would use ${after} of the ${maxBytes} bytes maxBytes allows: delete keys or raise "maxBytes" in the fs-store config`
                })
              }
            }
            if (fresh) {
              const target = objectPath(hash)
              yield* io("store", async () => {
                await fsp.mkdir(path.dirname(target), { recursive: true, mode: 0o700 })
                await writeDurably(target, value)
              })
            }
            yield* io("store", () => writeDurably(keyPath(key), `${hash}\n${key}`)).pipe(
              // The object would be garbage: nothing names it.
              Effect.tapError(() =>
                fresh ? Effect.promise(() => fsp.rm(objectPath(hash), { force: true })) : Effect.void
              )
            )
            index.set(key, hash)
            refs.set(hash, (refs.get(hash) ?? 0) + 1)
            sizes.set(hash, size)
            if (fresh) usedBytes += size
            logicalBytes += size
            if (previous !== undefined) yield* release(previous)
          })
        )
      )

    const retrieve: ObjectStore["retrieve"] = (key) =>
      Effect.gen(function* () {
        // Reads take no lock: an object may be unlinked between the index lookup and the read if the
        // key is overwritten or deleted meanwhile; then look again.
        for (let attempt = 0; attempt < 3; attempt++) {
          const hash = index.get(key)
          if (hash === undefined) return undefined
          const data = yield* Effect.tryPromise({
            try: () => fsp.readFile(objectPath(hash)),
            catch: (error) => error
          }).pipe(
            Effect.map((bytes): Uint8Array | undefined => bytes),
            Effect.catchAll((error) =>
              codeOf(error) === "ENOENT"
                ? Effect.succeed(undefined)
                : Effect.fail(
                    new StorageFailure({
                      operation: "retrieve",
                      reason: `${messageOf(error)} (under ${directory})`
                    })
                  )
            )
          )
          if (data === undefined) {
            if (index.get(key) !== hash) continue
            const problem = `object ${hash} of key ${JSON.stringify(key)} is missing`
            if (!damage.includes(problem)) damage.push(problem)
            return yield* new StorageFailure({
              operation: "retrieve",
              reason: `${problem} under ${directory}: the store is damaged; run fs-store.check and restore the key from a backup`
            })
          }
          if (sha256(data) !== hash) {
            const problem = `object ${hash} of key ${JSON.stringify(key)} does not match its hash`
            if (!damage.includes(problem)) damage.push(problem)
            return yield* new StorageFailure({
              operation: "retrieve",
              reason: `${problem} under ${directory}: the file was changed or damaged; run fs-store.check and restore the key from a backup`
            })
          }
          return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
        }
        return yield* new StorageFailure({
          operation: "retrieve",
          reason: `key ${JSON.stringify(key)} kept changing while it was read; try again`
        })
      })

    const remove: ObjectStore["delete"] = (key) =>
      Effect.flatMap(validKey("delete", key), () =>
        lock.withPermits(1)(
          Effect.gen(function* () {
            const hash = index.get(key)
            if (hash === undefined) return false
            yield* io("delete", async () => {
              await fsp.rm(keyPath(key), { force: true })
              await syncDir(keysDir)
            })
            index.delete(key)
            yield* release(hash)
            return true
          })
        )
      )

    const list: ObjectStore["list"] = (prefix) =>
      Effect.sync(() => [...index.keys()].filter((key) => key.startsWith(prefix)).sort(compareKeys))

    const capacity: ObjectStore["capacity"] = Effect.sync(() => ({
      usedBytes,
      totalBytes: maxBytes ?? null
    }))

    const stats: ObjectStore["stats"] = Effect.sync(() => ({
      directory,
      keys: index.size,
      objects: refs.size,
      usedBytes,
      logicalBytes,
      totalBytes: maxBytes ?? null
    }))

    // Under the lock: a consistent view of index and objects.
    const check: ObjectStore["check"] = lock.withPermits(1)(
      Effect.promise(async () => {
        const problems: Array<string> = []
        for (const [hash, count] of refs) {
          try {
            const data = await fsp.readFile(objectPath(hash))
            if (sha256(data) !== hash)
              problems.push(`object ${hash} (held by ${count} keys) does not match its hash`)
          } catch (error) {
            problems.push(`object ${hash} (held by ${count} keys) cannot be read: ${messageOf(error)}`)
          }
        }
        for (const problem of damage) if (problem.startsWith("keys/")) problems.push(problem)
        return { keys: index.size, objects: refs.size, problems }
      })
    )

    return {
      removed,
      store: {
        store,
        retrieve,
        delete: remove,
        list,
        capacity,
        stats,
        check,
        damage: Effect.sync(() => [...damage])
      }
    }
  })
