import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Identity, IdentityError, layer, layerMemory } from "../src/Identity.js"

/** A temp directory that is always removed, whatever the test's outcome. */
const tempDir = Effect.acquireRelease(
  Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "blackhole-identity-"))),
  (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true }))
)

/** Builds the file-backed layer afresh (as a node start would) and returns the service. */
const loadIdentity = (dataDir: string) =>
  Identity.pipe(Effect.provide(layer({ dataDir }).pipe(Layer.provide(NodeFileSystem.layer))))

const bytes = (text: string) => new TextEncoder().encode(text)

describe("Identity", () => {
  it.scoped("first start creates identity.key with mode 0600 and a 12D3KooW node ID", () =>
    Effect.gen(function* () {
      const root = yield* tempDir
      const dataDir = path.join(root, "data")
      const identity = yield* loadIdentity(dataDir)
      const keyStat = yield* Effect.promise(() => fs.stat(path.join(dataDir, "identity.key")))
      const dirStat = yield* Effect.promise(() => fs.stat(dataDir))
      assert.strictEqual(keyStat.mode & 0o777, 0o600)
      assert.strictEqual(dirStat.mode & 0o777, 0o700)
      assert.isTrue(identity.nodeId.startsWith("12D3KooW"), identity.nodeId)
      assert.strictEqual(identity.publicKey.length, 32)
      // No temp files left behind by the atomic write.
      assert.deepStrictEqual(yield* Effect.promise(() => fs.readdir(dataDir)), ["identity.key"])
    })
  )

  it.scoped("second start with the same data dir gives the same node ID", () =>
    Effect.gen(function* () {
      const dataDir = yield* tempDir
      const first = yield* loadIdentity(dataDir)
      const second = yield* loadIdentity(dataDir)
      assert.strictEqual(second.nodeId, first.nodeId)
      assert.deepStrictEqual(second.publicKey, first.publicKey)
    })
  )

  it.scoped("tightens a key file with wider permissions to 0600", () =>
    Effect.gen(function* () {
      const dataDir = yield* tempDir
      const keyPath = path.join(dataDir, "identity.key")
      const first = yield* loadIdentity(dataDir)
      yield* Effect.promise(() => fs.chmod(keyPath, 0o644))
      const second = yield* loadIdentity(dataDir)
      const keyStat = yield* Effect.promise(() => fs.stat(keyPath))
      assert.strictEqual(keyStat.mode & 0o777, 0o600)
      assert.strictEqual(second.nodeId, first.nodeId)
    })
  )

  it.scoped("sign/verify round trip; tampered data and another key's signature fail", () =>
    Effect.gen(function* () {
      const dataDir = yield* tempDir
      const identity = yield* loadIdentity(dataDir)
      const other = yield* Identity.pipe(Effect.provide(layerMemory()))
      const data = bytes("hello blackhole")

      const signature = yield* identity.sign(data)
      assert.strictEqual(signature.length, 64)
      assert.isTrue(yield* identity.verify(data, signature))
      assert.isTrue(yield* other.verify(data, signature, identity.publicKey))
      assert.isFalse(yield* identity.verify(bytes("hello blackhole!"), signature))

      const otherSignature = yield* other.sign(data)
      assert.isFalse(yield* identity.verify(data, otherSignature))
      assert.isTrue(yield* identity.verify(data, otherSignature, other.publicKey))

      // Malformed inputs are "not valid", never a failure.
      assert.isFalse(yield* identity.verify(data, signature.subarray(0, 10)))
      assert.isFalse(yield* identity.verify(data, signature, new Uint8Array(5)))
    })
  )

  it.scoped("a corrupt key file fails with IdentityError and is left untouched", () =>
    Effect.gen(function* () {
      const dataDir = yield* tempDir
      const keyPath = path.join(dataDir, "identity.key")
      const garbage = bytes("definitely not a protobuf key")
      yield* Effect.promise(() => fs.writeFile(keyPath, garbage, { mode: 0o600 }))

      const error = yield* Effect.flip(loadIdentity(dataDir))
      assert.instanceOf(error, IdentityError)
      assert.strictEqual(error.path, keyPath)
      assert.include(error.message, keyPath)
      assert.include(error.message, "move it away")

      const after = yield* Effect.promise(() => fs.readFile(keyPath))
      assert.deepStrictEqual(new Uint8Array(after), garbage)
      assert.deepStrictEqual(yield* Effect.promise(() => fs.readdir(dataDir)), ["identity.key"])
    })
  )

  it.effect("seeded layerMemory is deterministic", () =>
    Effect.gen(function* () {
      const seed = new Uint8Array(32).fill(7)
      const a = yield* Identity.pipe(Effect.provide(layerMemory({ seed })))
      const b = yield* Identity.pipe(Effect.provide(layerMemory({ seed })))
      const c = yield* Identity.pipe(Effect.provide(layerMemory()))
      assert.strictEqual(a.nodeId, b.nodeId)
      assert.isTrue(a.nodeId.startsWith("12D3KooW"))
      assert.notStrictEqual(c.nodeId, a.nodeId)
      // Ed25519 signatures are deterministic, so the same seed signs identically.
      const data = bytes("same")
      assert.deepStrictEqual(yield* a.sign(data), yield* b.sign(data))
    })
  )
})
