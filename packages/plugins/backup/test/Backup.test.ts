/**
 * The backup plugin on the in-memory test kit: a fake core `storage` service
 * on the fake mesh, snapshot files in a temp directory.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as PluginConfig from "@blackhole/sdk/PluginConfig"
import { PluginTest } from "@blackhole/sdk/testing"
import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { Backup, BackupError } from "../src/contract.js"
import definition from "../src/index.js"
import * as SnapshotFile from "../src/internal/snapshotFile.js"
import { eventually, fakeStorage, tempDir } from "./support.js"

/** Starts the plugin over `storage` with snapshots in a temp directory; `config` adds to the defaults. */
const start = (storage: ReturnType<typeof fakeStorage>, config: Record<string, unknown> = {}) =>
  Effect.gen(function* () {
    const directory = yield* tempDir
    const running = yield* PluginTest.run(definition, {
      config: { directory, ...config },
      permissions: "manifest",
      services: [storage.implementation]
    })
    return { ...running, directory, backup: running.client(Backup) }
  })

const seeded = () =>
  fakeStorage([
    ["plugin/a", "one", "1"],
    ["plugin/a", "two", "2"],
    ["plugin/b", "x", "ex"],
    ["users", "alice", JSON.stringify({ name: "Alice" })]
  ])

/** The failure of an Exit as a BackupError, or a test failure. */
const backupErrorOf = <A>(exit: Exit.Exit<A, unknown>): BackupError => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  const error = Cause.failureOption(exit.cause)
  if (error._tag === "None" || !(error.value instanceof BackupError)) {
    throw new Error(`expected a BackupError, got ${Cause.pretty(exit.cause)}`)
  }
  return error.value
}

describe("backup", () => {
  it.scopedLive("run takes a snapshot of every entry, list shows it and verify accepts it", () =>
    Effect.gen(function* () {
      const storage = seeded()
      const { backup, directory, recorder, handlers } = yield* start(storage)
      const info = yield* backup.run()
      assert.strictEqual(info.entries, 4)
      assert.match(info.checksum, /^[0-9a-f]{64}$/)
      assert.strictEqual(info.namespacePrefix, null)
      const file = SnapshotFile.pathOf(directory, info.id)
      assert.strictEqual(fs.statSync(file).size, info.bytes)
      // No temp files stay behind.
      assert.deepStrictEqual(fs.readdirSync(directory), [path.basename(file)])

      const status = yield* backup.list()
      assert.strictEqual(status.status, "ok")
      assert.strictEqual(status.directory, directory)
      assert.deepStrictEqual(status.snapshots, [info])
      assert.strictEqual(status.lastSuccess?.id, info.id)
      assert.isNull(status.lastFailure)

      const verification = yield* backup.verify({ id: info.id })
      assert.deepStrictEqual(verification, {
        id: info.id,
        valid: true,
        entries: 4,
        expected: info.checksum,
        actual: info.checksum,
        problem: null
      })

      const published = yield* recorder.published
      assert.deepStrictEqual(published, [{ type: "backup.completed", data: { ...info, trigger: "manual" } }])
      assert.strictEqual((yield* handlers.health!).status, "healthy")
    })
  )

  it.scopedLive(
    "the file is the documented format: header, one line per entry, footer with the checksum",
    () =>
      Effect.gen(function* () {
        const storage = seeded()
        const { backup, directory } = yield* start(storage)
        const info = yield* backup.run()
        const content = fs.readFileSync(SnapshotFile.pathOf(directory, info.id))
        const lines = content.toString("utf8").split("\n")
        assert.strictEqual(lines.pop(), "", "every line ends with a newline")
        const header = JSON.parse(lines[0]!)
        assert.deepStrictEqual(header, {
          format: "blackhole-backup",
          version: 1,
          id: info.id,
          createdAt: info.createdAt,
          nodeId: "12D3KooWTestNode",
          namespacePrefix: null
        })
        assert.deepStrictEqual(
          lines.slice(1, -1).map((line) => JSON.parse(line)),
          [
            { namespace: "plugin/a", key: "one", value: Buffer.from("1").toString("base64") },
            { namespace: "plugin/a", key: "two", value: Buffer.from("2").toString("base64") },
            { namespace: "plugin/b", key: "x", value: Buffer.from("ex").toString("base64") },
            {
              namespace: "users",
              key: "alice",
              value: Buffer.from(JSON.stringify({ name: "Alice" })).toString("base64")
            }
          ]
        )
        const footer = JSON.parse(lines.at(-1)!)
        const body = content.subarray(0, content.length - Buffer.byteLength(`${lines.at(-1)}\n`))
        const { createHash } = yield* Effect.promise(() => import("node:crypto"))
        assert.deepStrictEqual(footer, {
          footer: "blackhole-backup",
          entries: 4,
          sha256: createHash("sha256").update(body).digest("hex")
        })
      })
  )

  it.scopedLive("restore writes every entry back through the storage service's batch", () =>
    Effect.gen(function* () {
      const storage = seeded()
      // Values large enough that a restore needs more than one batch (each is bounded to ~1 MiB).
      const big = "x".repeat(400_000)
      for (let i = 0; i < 5; i++) storage.put("blobs", `b${i}`, `${i}${big}`)
      const { backup, recorder } = yield* start(storage)
      const info = yield* backup.run()
      assert.strictEqual(info.entries, 9)

      storage.clear()
      storage.put("users", "alice", "changed")
      storage.put("users", "bob", "created after the snapshot")
      const restored = yield* backup.restore({ id: info.id })
      assert.strictEqual(restored.entries, 9)
      assert.isAbove(restored.batches, 1)
      assert.strictEqual(storage.get("plugin/a", "one"), "1")
      assert.strictEqual(storage.get("plugin/b", "x"), "ex")
      assert.strictEqual(storage.get("users", "alice"), JSON.stringify({ name: "Alice" }))
      assert.strictEqual(storage.get("blobs", "b3"), `3${big}`)
      // A restore puts the snapshot back; keys created since are left alone.
      assert.strictEqual(storage.get("users", "bob"), "created after the snapshot")
      const methods = (yield* recorder.calls).map((call) => `${call.service}.${call.method}`)
      assert.deepStrictEqual(methods, ["storage.snapshot", ...Array(restored.batches).fill("storage.batch")])
    })
  )

  it.scopedLive("a small snapshot is restored in one (atomic) batch", () =>
    Effect.gen(function* () {
      const storage = seeded()
      const { backup } = yield* start(storage)
      const info = yield* backup.run()
      storage.clear()
      const restored = yield* backup.restore({ id: info.id })
      assert.deepStrictEqual(restored, { id: info.id, entries: 4, batches: 1 })
      assert.strictEqual(storage.size(), 4)
    })
  )

  it.scopedLive("retention keeps the newest snapshots and deletes the older ones", () =>
    Effect.gen(function* () {
      const storage = seeded()
      const { backup, directory } = yield* start(storage, { retention: 2 })
      const taken: Array<string> = []
      for (let i = 0; i < 4; i++) {
        storage.put("counter", "n", String(i))
        taken.push((yield* backup.run()).id)
      }
      const status = yield* backup.list()
      assert.deepStrictEqual(
        status.snapshots.map((s) => s.id),
        [taken[3]!, taken[2]!]
      )
      assert.deepStrictEqual(fs.readdirSync(directory).sort(), [
        `${taken[2]!}${SnapshotFile.suffix}`,
        `${taken[3]!}${SnapshotFile.suffix}`
      ])
      const deleted = yield* backup.verify({ id: taken[0]! }).pipe(Effect.exit)
      assert.strictEqual(backupErrorOf(deleted).reason, "not-found")
    })
  )

  it.scopedLive("a changed byte fails verify and stops restore before anything is written", () =>
    Effect.gen(function* () {
      const storage = seeded()
      const { backup, directory, recorder } = yield* start(storage)
      const info = yield* backup.run()
      const file = SnapshotFile.pathOf(directory, info.id)
      // Change one value inside an entry line ("1" → "2" in base64: "MQ==" → "Mg=="), keeping the file valid JSON.
      const original = fs.readFileSync(file, "utf8")
      fs.writeFileSync(file, original.replace('"value":"MQ=="', '"value":"Mg=="'))
      assert.notStrictEqual(fs.readFileSync(file, "utf8"), original)

      const verification = yield* backup.verify({ id: info.id })
      assert.isFalse(verification.valid)
      assert.strictEqual(verification.expected, info.checksum)
      assert.notStrictEqual(verification.actual, info.checksum)
      assert.match(verification.problem ?? "", /checksum mismatch/)

      storage.clear()
      const error = backupErrorOf(yield* backup.restore({ id: info.id }).pipe(Effect.exit))
      assert.strictEqual(error.reason, "corrupt")
      assert.match(error.message, /checksum mismatch/)
      assert.strictEqual(storage.size(), 0)
      assert.notInclude(
        (yield* recorder.calls).map((call) => call.method),
        "batch"
      )
    })
  )

  it.scopedLive("a truncated snapshot is reported by verify and list", () =>
    Effect.gen(function* () {
      const { backup, directory } = yield* start(seeded())
      const info = yield* backup.run()
      const file = SnapshotFile.pathOf(directory, info.id)
      fs.truncateSync(file, info.bytes - 20)
      const verification = yield* backup.verify({ id: info.id })
      assert.isFalse(verification.valid)
      assert.match(verification.problem ?? "", /no footer/)
      const status = yield* backup.list()
      assert.deepStrictEqual(status.snapshots, [])
      assert.deepStrictEqual(
        status.unreadable.map((u) => u.id),
        [info.id]
      )
    })
  )

  it.scopedLive("a failed backup is logged at error, published as backup.failed and shown as degraded", () =>
    Effect.gen(function* () {
      const storage = seeded()
      const { backup, recorder, handlers } = yield* start(storage)
      storage.state.failWith = "disk on fire"
      const error = backupErrorOf(yield* backup.run().pipe(Effect.exit))
      assert.strictEqual(error.reason, "storage")
      assert.match(error.message, /disk on fire/)

      const failed = (yield* recorder.published).filter((event) => event.type === "backup.failed")
      assert.strictEqual(failed.length, 1)
      const data = failed[0]!.data as { reason: string; trigger: string; at: string }
      assert.strictEqual(data.trigger, "manual")
      assert.match(data.reason, /disk on fire/)
      const errors = (yield* recorder.logs).filter((line) => line.level === "error")
      assert.strictEqual(errors.length, 1)
      assert.match(errors[0]!.message, /backup failed: .*disk on fire/)

      const status = yield* backup.list()
      assert.strictEqual(status.status, "degraded")
      assert.match(status.lastFailure?.reason ?? "", /disk on fire/)
      const health = yield* handlers.health!
      assert.strictEqual(health.status, "degraded")
      assert.match(health.details ?? "", /disk on fire/)

      // The next successful backup clears it.
      storage.state.failWith = undefined
      yield* backup.run()
      assert.strictEqual((yield* backup.list()).status, "ok")
      assert.strictEqual((yield* handlers.health!).status, "healthy")
    })
  )

  it.scopedLive("backups run on the configured interval", () =>
    Effect.gen(function* () {
      const storage = seeded()
      const { backup, recorder } = yield* start(storage, { schedule: 100, retention: 100 })
      const status = yield* eventually(
        Effect.map(backup.list(), (status) => (status.snapshots.length >= 2 ? status : undefined)),
        "two scheduled snapshots"
      )
      assert.strictEqual(status.status, "ok")
      // A snapshot is listed once its file is in place; its event follows the verification.
      const completed = yield* eventually(
        Effect.map(recorder.published, (events) => {
          const done = events.filter((event) => event.type === "backup.completed")
          return done.length >= 2 ? done : undefined
        }),
        "two backup.completed events"
      )
      assert.strictEqual((completed[0]!.data as { trigger: string }).trigger, "schedule")
    })
  )

  it.scopedLive("a scheduled backup that fails is reported, not skipped", () =>
    Effect.gen(function* () {
      const storage = seeded()
      storage.state.failWith = "storage offline"
      const { recorder, handlers } = yield* start(storage, { schedule: 100 })
      const failed = yield* eventually(
        Effect.map(recorder.published, (events) => events.find((event) => event.type === "backup.failed")),
        "a backup.failed event"
      )
      assert.deepInclude(failed.data as object, { trigger: "schedule" })
      assert.match((failed.data as { reason: string }).reason, /storage offline/)
      assert.strictEqual((yield* handlers.health!).status, "degraded")
    })
  )

  it.scopedLive("namespacePrefix limits the snapshot to matching namespaces", () =>
    Effect.gen(function* () {
      const { backup } = yield* start(seeded(), { namespacePrefix: "plugin/" })
      const info = yield* backup.run()
      assert.strictEqual(info.entries, 3)
      assert.strictEqual(info.namespacePrefix, "plugin/")
    })
  )

  it.scopedLive("restore and verify of an unknown snapshot fail with not-found", () =>
    Effect.gen(function* () {
      const { backup } = yield* start(seeded())
      const error = backupErrorOf(
        yield* backup.restore({ id: "20250101T030000000Z-abcdef" }).pipe(Effect.exit)
      )
      assert.strictEqual(error.reason, "not-found")
      assert.match(error.message, /backup\.list/)
    })
  )

  it.scopedLive("ids that are not snapshot ids are refused before touching the file system", () =>
    Effect.gen(function* () {
      const { backup } = yield* start(seeded())
      const exit = yield* backup.verify({ id: "../../etc/passwd" }).pipe(Effect.exit)
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : undefined
      assert.strictEqual(
        error?._tag === "Some" ? (error.value as { _tag: string })._tag : undefined,
        "InvalidPayload"
      )
    })
  )

  it.scopedLive("temp files an interrupted backup left are removed at start", () =>
    Effect.gen(function* () {
      const directory = yield* tempDir
      fs.writeFileSync(path.join(directory, ".tmp-20250101T030000000Z-abcdef"), "half a snapshot")
      fs.writeFileSync(path.join(directory, "unrelated.txt"), "kept")
      yield* PluginTest.run(definition, {
        config: { directory },
        services: [seeded().implementation]
      })
      assert.deepStrictEqual(fs.readdirSync(directory), ["unrelated.txt"])
    })
  )

  it.scopedLive("without a directory outside a subprocess, start fails saying what to set", () =>
    Effect.gen(function* () {
      const exit = yield* PluginTest.run(definition, { services: [seeded().implementation] }).pipe(
        Effect.exit
      )
      assert.match(backupErrorOf(exit).message, /set "directory"/)
    })
  )

  it.scopedLive("an unwritable directory fails start and names the fs:write grant it needs", () =>
    Effect.gen(function* () {
      const parent = yield* tempDir
      fs.writeFileSync(path.join(parent, "file"), "")
      const directory = path.join(parent, "file", "backups")
      const exit = yield* PluginTest.run(definition, {
        config: { directory },
        services: [seeded().implementation]
      }).pipe(Effect.exit)
      const error = backupErrorOf(exit)
      assert.include(error.message, `fs:write:${directory}`)
      assert.include(error.message, "plugins.grants")
    })
  )
})

describe("backup config", () => {
  const decode = (raw: unknown) => PluginConfig.decode(definition.config, raw, definition.manifest.id)

  it.effect("defaults: hourly, 24 kept, the data directory, every namespace", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(yield* decode({}), { schedule: 3_600_000, retention: 24 })
    })
  )

  it.effect("schedule takes milliseconds or a cron expression", () =>
    Effect.gen(function* () {
      assert.strictEqual((yield* decode({ schedule: 60_000 })).schedule, 60_000)
      assert.strictEqual((yield* decode({ schedule: "0 3 * * *" })).schedule, "0 3 * * *")
      const bad = yield* Effect.flip(decode({ schedule: "every day", retention: 0, directory: "backups" }))
      const message = bad.message
      assert.include(message, "is not a cron expression")
      assert.include(message, "at least 1")
      assert.include(message, "must be an absolute path")
    })
  )
})
