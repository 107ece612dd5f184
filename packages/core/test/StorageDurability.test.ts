import { type ChildProcess, spawn } from "node:child_process"
import { existsSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as StorageBackend from "../src/StorageBackend.js"

const fixture = fileURLToPath(new URL("./fixtures/storage-writer.mjs", import.meta.url))
// The child imports the built package, as a plugin process or another tool would.
const built = fileURLToPath(new URL("../dist/StorageBackend.js", import.meta.url))

// Must match valueFor in the fixture.
const valueFor = (i: number): string => `value ${i} `.repeat(8)

const tempDir = Effect.acquireRelease(
  Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "bh-"))),
  (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true }))
)

// Whatever happens to the test, the child is killed and reaped before the scope (and so the
// temp dir) closes.
const spawnWriter = (filename: string) =>
  Effect.acquireRelease(
    Effect.sync(() => spawn(process.execPath, [fixture, filename], { stdio: ["ignore", "pipe", "pipe"] })),
    (child) =>
      Effect.async<void>((resume) => {
        if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
        child.once("exit", () => resume(Effect.void))
        child.kill("SIGKILL")
      })
  )

interface Outcome {
  readonly keys: ReadonlyArray<string>
  readonly signal: NodeJS.Signals | null
}

// SIGKILLs the child as soon as it has acknowledged `count` keys, then keeps every line it had
// already written, until its pipes close: each of those keys was acknowledged before it died.
const killAfter = (child: ChildProcess, count: number) =>
  Effect.async<Outcome, Error>((resume) => {
    const keys: Array<string> = []
    let stderr = ""
    child.stderr!.on("data", (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    const lines = readline.createInterface({ input: child.stdout! })
    lines.on("line", (line) => {
      keys.push(line)
      if (keys.length === count) child.kill("SIGKILL")
    })
    child.once("close", (code, signal) => {
      if (keys.length < count) {
        resume(
          Effect.fail(new Error(`writer exited (${code ?? signal}) after ${keys.length} keys: ${stderr}`))
        )
      } else {
        resume(Effect.succeed({ keys, signal }))
      }
    })
  })

describe("StorageBackend.layerSqlite durability", () => {
  it.scoped(
    "every write acknowledged before a SIGKILL is in the file afterwards",
    () =>
      Effect.gen(function* () {
        if (!existsSync(built)) {
          return yield* Effect.dieMessage(
            `${built} is missing: build the core first (npx tsc -b packages/core)`
          )
        }
        const filename = path.join(yield* tempDir, "node.db")
        const child = yield* spawnWriter(filename)
        const outcome = yield* killAfter(child, 200)
        assert.strictEqual(outcome.signal, "SIGKILL")
        assert.isAtLeast(outcome.keys.length, 200)

        const stored = yield* Effect.flatMap(StorageBackend.StorageBackend, (backend) =>
          Stream.runCollect(backend.snapshot("durability"))
        ).pipe(Effect.provide(StorageBackend.layerSqlite({ filename })))
        const values = new Map(
          Chunk.toReadonlyArray(stored).map((e) => [e.key, new TextDecoder().decode(e.value)])
        )
        const missing = outcome.keys.filter(
          (key) => values.get(key) !== valueFor(Number(key.slice("key-".length)))
        )
        assert.deepStrictEqual(missing, [], "acknowledged keys missing or wrong after the crash")
        assert.isAtLeast(values.size, outcome.keys.length)
      }),
    60_000
  )
})
