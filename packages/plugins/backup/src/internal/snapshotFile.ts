/**
 * Snapshot files: JSON Lines with a header, one line per entry, and a footer
 * holding the entry count and the SHA-256 of every byte before it (see
 * README.md, "Snapshot file format"). Written to a temp file, fsynced, renamed
 * into place and read back to check the checksum; read in bounded chunks.
 */
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import * as readline from "node:readline"
import * as CoreServices from "@blackhole/sdk/CoreServices"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { BackupError, type SnapshotInfo, type Verification } from "../contract.js"

/** The `format` a header carries. */
export const format = "blackhole-backup"
/** The format version this code writes and reads. */
export const version = 1
/** File name suffix of a snapshot. */
export const suffix = ".snapshot.jsonl"

const fileName = /^(\d{8}T\d{9}Z-[0-9a-f]{6})\.snapshot\.jsonl$/
const tempPrefix = ".tmp-"

/** The first line of a snapshot. */
export const Header = Schema.Struct({
  format: Schema.Literal(format),
  version: Schema.Literal(version),
  id: Schema.String,
  createdAt: Schema.String,
  nodeId: Schema.String,
  namespacePrefix: Schema.NullOr(Schema.String)
})
/** @see Header */
export type Header = typeof Header.Type

/** The last line of a snapshot. */
export const Footer = Schema.Struct({
  footer: Schema.Literal(format),
  entries: Schema.Number,
  sha256: Schema.String.pipe(Schema.pattern(/^[0-9a-f]{64}$/))
})

const decodeHeader = Schema.decodeUnknownEither(Schema.parseJson(Header))
const decodeFooter = Schema.decodeUnknownEither(Schema.parseJson(Footer))
const decodeEntry = Schema.decodeUnknown(Schema.parseJson(CoreServices.Entry))

const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error))
const codeOf = (error: unknown): string | undefined =>
  typeof error === "object" && error !== null && "code" in error ? String(error.code) : undefined

/** A file-system step; `what` names it in the error. */
const io = <A>(what: string, run: () => Promise<A>): Effect.Effect<A, BackupError> =>
  Effect.tryPromise({
    try: run,
    catch: (error) => new BackupError({ reason: "io", detail: `${what}: ${messageOf(error)}` })
  })

/** `<createdAt compact UTC>-<6 hex>`: ids sort by creation time. */
export const makeId = (millis: number): string =>
  `${new Date(millis).toISOString().replace(/[-:.]/g, "")}-${crypto.randomBytes(3).toString("hex")}`

/** The file a snapshot id names. */
export const pathOf = (directory: string, id: string): string => path.join(directory, `${id}${suffix}`)

const notFound = (id: string) =>
  new BackupError({ reason: "not-found", detail: `no snapshot ${id} (backup.list shows the ones there are)` })

const writeAll = async (handle: fsp.FileHandle, buffer: Buffer) => {
  let offset = 0
  while (offset < buffer.length) {
    const { bytesWritten } = await handle.write(buffer, offset, buffer.length - offset)
    offset += bytesWritten
  }
}

// A rename is durable only once the directory entry itself is on disk.
const syncDirectory = (directory: string) =>
  io(`fsync ${directory}`, async () => {
    const handle = await fsp.open(directory, "r")
    try {
      await handle.sync()
    } finally {
      await handle.close()
    }
  })

/** Lines are flushed to the file in chunks of about this many bytes. */
const chunkBytes = 1 << 20

/**
 * Writes a snapshot atomically (temp file, fsync, rename, fsync of the directory) and verifies
 * its checksum by reading it back; a snapshot that does not verify is removed and reported.
 */
export const write = (
  directory: string,
  header: Header,
  entries: ReadonlyArray<CoreServices.Entry>
): Effect.Effect<SnapshotInfo, BackupError> =>
  Effect.gen(function* () {
    const temp = path.join(directory, `${tempPrefix}${header.id}`)
    const target = pathOf(directory, header.id)
    const checksum = yield* Effect.acquireUseRelease(
      io(`create ${temp}`, () => fsp.open(temp, "wx", 0o600)),
      (handle) =>
        io(`write ${temp}`, async () => {
          const hash = crypto.createHash("sha256")
          let lines: Array<string> = [`${JSON.stringify(header)}\n`]
          let pending = lines[0]!.length
          const flush = async () => {
            const buffer = Buffer.from(lines.join(""), "utf8")
            hash.update(buffer)
            await writeAll(handle, buffer)
            lines = []
            pending = 0
          }
          for (const entry of entries) {
            const line = `${JSON.stringify({
              namespace: entry.namespace,
              key: entry.key,
              value: Buffer.from(entry.value.buffer, entry.value.byteOffset, entry.value.byteLength).toString(
                "base64"
              )
            })}\n`
            lines.push(line)
            pending += line.length
            if (pending >= chunkBytes) await flush()
          }
          await flush()
          const sha256 = hash.digest("hex")
          await writeAll(
            handle,
            Buffer.from(`${JSON.stringify({ footer: format, entries: entries.length, sha256 })}\n`)
          )
          await handle.sync()
          return sha256
        }),
      (handle) => Effect.promise(() => handle.close().catch(() => undefined))
    ).pipe(Effect.onError(() => Effect.promise(() => fsp.rm(temp, { force: true }))))
    yield* io(`rename ${temp} to ${target}`, () => fsp.rename(temp, target)).pipe(
      Effect.onError(() => Effect.promise(() => fsp.rm(temp, { force: true })))
    )
    yield* syncDirectory(directory)
    const verification = yield* verify(directory, header.id)
    if (!verification.valid || verification.actual !== checksum) {
      yield* Effect.promise(() => fsp.rm(target, { force: true }))
      return yield* new BackupError({
        reason: "corrupt",
        detail: `snapshot ${header.id} did not read back as written (${verification.problem ?? "checksum differs"}); it was removed: check the disk under ${directory}`
      })
    }
    const { size } = yield* io(`stat ${target}`, () => fsp.stat(target))
    return {
      id: header.id,
      createdAt: header.createdAt,
      namespacePrefix: header.namespacePrefix,
      entries: entries.length,
      bytes: size,
      checksum
    }
  })

/** Where the footer starts and what it says; `Left` is why it cannot be read. */
const readFooter = async (
  handle: fsp.FileHandle,
  size: number
): Promise<Either.Either<{ readonly start: number; readonly footer: typeof Footer.Type }, string>> => {
  const missing = Either.left("no footer: the file is truncated or was not written by the backup plugin")
  // The footer is short (under 200 bytes); 4 KiB is plenty.
  const length = Math.min(size, 4096)
  const tail = Buffer.alloc(length)
  await handle.read(tail, 0, length, size - length)
  if (length === 0 || tail[length - 1] !== 0x0a) return missing
  const newline = tail.lastIndexOf(0x0a, length - 2)
  if (newline < 0 && length < size) return missing
  const start = size - length + newline + 1
  return Either.match(decodeFooter(tail.subarray(newline + 1, length - 1).toString("utf8")), {
    onLeft: () => missing,
    onRight: (footer) => Either.right({ start, footer })
  })
}

/** The first line (at most 64 KiB) decoded as a header. */
const readHeader = async (handle: fsp.FileHandle, size: number): Promise<Either.Either<Header, string>> => {
  const length = Math.min(size, 65536)
  const head = Buffer.alloc(length)
  await handle.read(head, 0, length, 0)
  const newline = head.indexOf(0x0a)
  if (newline < 0) return Either.left("no header line")
  return Either.mapLeft(
    decodeHeader(head.subarray(0, newline).toString("utf8")),
    () => `the header is not a ${format} v${version} header`
  )
}

const open = (directory: string, id: string) =>
  Effect.tryPromise({
    try: () => fsp.open(pathOf(directory, id), "r"),
    catch: (error) =>
      codeOf(error) === "ENOENT"
        ? notFound(id)
        : new BackupError({ reason: "io", detail: `open snapshot ${id}: ${messageOf(error)}` })
  })

const withFile = <A>(
  directory: string,
  id: string,
  use: (handle: fsp.FileHandle, size: number) => Promise<A>
): Effect.Effect<A, BackupError> =>
  Effect.acquireUseRelease(
    open(directory, id),
    (handle) =>
      io(`read snapshot ${id}`, async () => {
        const { size } = await handle.stat()
        return use(handle, size)
      }),
    (handle) => Effect.promise(() => handle.close().catch(() => undefined))
  )

/** Recomputes the checksum and counts the entries; a missing file fails with `not-found`. */
export const verify = (directory: string, id: string): Effect.Effect<Verification, BackupError> =>
  withFile(directory, id, async (handle, size): Promise<Verification> => {
    const invalid = (problem: string, expected: string | null = null, actual: string | null = null) => ({
      id,
      valid: false,
      entries: null,
      expected,
      actual,
      problem
    })
    const header = await readHeader(handle, size)
    if (Either.isLeft(header)) return invalid(header.left)
    if (header.right.id !== id) return invalid(`the header names snapshot ${header.right.id}, not ${id}`)
    const footer = await readFooter(handle, size)
    if (Either.isLeft(footer)) return invalid(footer.left)
    const { start, footer: recorded } = footer.right
    const hash = crypto.createHash("sha256")
    const buffer = Buffer.alloc(Math.min(chunkBytes, Math.max(start, 1)))
    let lines = 0
    for (let position = 0; position < start; ) {
      const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, start - position), position)
      if (bytesRead === 0) break
      const chunk = buffer.subarray(0, bytesRead)
      hash.update(chunk)
      for (let i = chunk.indexOf(0x0a); i >= 0; i = chunk.indexOf(0x0a, i + 1)) lines++
      position += bytesRead
    }
    const actual = hash.digest("hex")
    if (actual !== recorded.sha256) {
      return invalid(
        `checksum mismatch: the footer records ${recorded.sha256}, the file hashes to ${actual} (the file was changed or damaged)`,
        recorded.sha256,
        actual
      )
    }
    // The header is one line; every other line before the footer is an entry.
    if (lines - 1 !== recorded.entries) {
      return invalid(
        `the footer records ${recorded.entries} entries, the file has ${lines - 1}`,
        recorded.sha256,
        actual
      )
    }
    return { id, valid: true, entries: recorded.entries, expected: recorded.sha256, actual, problem: null }
  })

/** A snapshot's metadata from its header and footer (not verified); `Left` is why it cannot be read. */
const info = (
  directory: string,
  id: string
): Effect.Effect<Either.Either<SnapshotInfo, string>, BackupError> =>
  withFile(directory, id, async (handle, size) => {
    const header = await readHeader(handle, size)
    if (Either.isLeft(header)) return Either.left(header.left)
    const footer = await readFooter(handle, size)
    if (Either.isLeft(footer)) return Either.left(footer.left)
    return Either.right({
      id,
      createdAt: header.right.createdAt,
      namespacePrefix: header.right.namespacePrefix,
      entries: footer.right.footer.entries,
      bytes: size,
      checksum: footer.right.footer.sha256
    })
  })

/** Ids of the snapshot files in `directory`, oldest first. */
export const ids = (directory: string): Effect.Effect<ReadonlyArray<string>, BackupError> =>
  io(`read directory ${directory}`, () => fsp.readdir(directory)).pipe(
    Effect.map((names) =>
      names
        .flatMap((name) => {
          const match = fileName.exec(name)
          return match === null ? [] : [match[1]!]
        })
        .sort()
    )
  )

/** Every snapshot in `directory`, newest first, and the files that cannot be read. */
export const list = (directory: string) =>
  Effect.gen(function* () {
    const snapshots: Array<SnapshotInfo> = []
    const unreadable: Array<{ id: string; bytes: number; problem: string }> = []
    for (const id of [...(yield* ids(directory))].reverse()) {
      const result = yield* info(directory, id).pipe(
        // Removed by retention between readdir and open: not there any more.
        Effect.catchIf(
          (error) => error.reason === "not-found",
          () => Effect.succeed(undefined)
        ),
        Effect.catchAll((error) => Effect.succeed(Either.left(error.detail)))
      )
      if (result === undefined) continue
      if (Either.isRight(result)) snapshots.push(result.right)
      else {
        const bytes = yield* Effect.promise(() =>
          fsp.stat(pathOf(directory, id)).then(
            (stat) => stat.size,
            () => 0
          )
        )
        unreadable.push({ id, bytes, problem: result.left })
      }
    }
    return { snapshots, unreadable }
  })

/** Deletes one snapshot file (already gone is fine). */
export const remove = (directory: string, id: string): Effect.Effect<void, BackupError> =>
  io(`delete snapshot ${id}`, () => fsp.rm(pathOf(directory, id), { force: true }))

/** Removes temp files a crash left behind; call only while no snapshot is being written. */
export const removeTemporaries = (directory: string): Effect.Effect<number, BackupError> =>
  Effect.gen(function* () {
    const names = yield* io(`read directory ${directory}`, () => fsp.readdir(directory))
    const temps = names.filter((name) => name.startsWith(tempPrefix))
    for (const name of temps)
      yield* io(`delete ${name}`, () => fsp.rm(path.join(directory, name), { force: true }))
    return temps.length
  })

/**
 * The entries of a snapshot, read line by line (call `verify` first: this only checks that
 * each line decodes). The footer is not an entry.
 */
export const entries = (directory: string, id: string): Stream.Stream<CoreServices.Entry, BackupError> =>
  Stream.unwrapScoped(
    Effect.gen(function* () {
      const footerStart = yield* withFile(directory, id, async (handle, size) => {
        const footer = await readFooter(handle, size)
        return Either.isRight(footer) ? footer.right.start : undefined
      })
      if (footerStart === undefined) {
        return yield* new BackupError({ reason: "corrupt", detail: `snapshot ${id} has no footer` })
      }
      const input = yield* Effect.acquireRelease(
        Effect.sync(() =>
          fs.createReadStream(pathOf(directory, id), { start: 0, end: Math.max(0, footerStart - 1) })
        ),
        (input) => Effect.sync(() => input.destroy())
      )
      const lines = readline.createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY })
      return Stream.fromAsyncIterable(
        lines,
        (error) => new BackupError({ reason: "io", detail: `read snapshot ${id}: ${messageOf(error)}` })
      ).pipe(
        // The first line is the header.
        Stream.drop(1),
        Stream.mapEffect((line) =>
          decodeEntry(line).pipe(
            Effect.mapError(
              (error) =>
                new BackupError({
                  reason: "corrupt",
                  detail: `snapshot ${id} has an entry that does not decode: ${error.message}`
                })
            )
          )
        )
      )
    })
  )
