/**
 * The node's Ed25519 key pair. Its libp2p PeerId string is the node ID everywhere (API, mesh,
 * P2P), so the later P2P layer and everything else agree on who this node is from day one.
 */

import * as NodePath from "node:path"
import type { PlatformError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import {
  generateKeyPair,
  generateKeyPairFromSeed,
  privateKeyFromProtobuf,
  privateKeyToProtobuf,
  publicKeyFromRaw
} from "@libp2p/crypto/keys"
import type { Ed25519PrivateKey } from "@libp2p/interface"
import { peerIdFromPrivateKey } from "@libp2p/peer-id"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/** The node's key pair and the operations that need its private half. */
export class Identity extends Context.Tag("@blackhole/core/Identity")<Identity, Identity.Service>() {}

/** Types belonging to the {@link Identity} tag. */
export declare namespace Identity {
  /** What the Identity service offers. */
  export interface Service {
    /** libp2p PeerId string of the Ed25519 key (e.g. "12D3KooW…"): the node ID everywhere. */
    readonly nodeId: string
    /** Raw 32-byte Ed25519 public key. */
    readonly publicKey: Uint8Array
    /** The @libp2p/crypto key object, so the later P2P layer can use the same key. */
    readonly privateKey: Ed25519PrivateKey
    /** Signs with the node's private key (64-byte Ed25519 signature). */
    readonly sign: (data: Uint8Array) => Effect.Effect<Uint8Array>
    /** Checks a signature against `publicKey` (raw 32 bytes; default: this node's own key). */
    readonly verify: (
      data: Uint8Array,
      signature: Uint8Array,
      publicKey?: Uint8Array
    ) => Effect.Effect<boolean>
  }
}

/** The key file could not be loaded or created; the node cannot start without an identity. */
export class IdentityError extends Data.TaggedError("IdentityError")<{
  /** The key file (or data directory) concerned. */
  readonly path: string
  /** What went wrong and what the operator can do about it. */
  readonly reason: string
}> {
  override get message(): string {
    return `identity key ${this.path}: ${this.reason}`
  }
}

/** The key file's name inside the data directory (see DESIGN.md "Data directory"). */
const KEY_FILE = "identity.key"

const ED25519_PUBLIC_KEY_LENGTH = 32
const ED25519_SEED_LENGTH = 32

const MOVE_AWAY_ADVICE =
  "move it away (or restore it from a backup) and start again to generate a new identity; " +
  "the node ID will change"

/** Turns a file-system error into an IdentityError that says which step failed. */
const failedTo =
  (path: string, what: string) =>
  (error: PlatformError): IdentityError =>
    new IdentityError({ path, reason: `cannot ${what} (${error.message})` })

const make = (privateKey: Ed25519PrivateKey): Identity.Service => {
  const ownPublicKey = privateKey.publicKey
  return {
    nodeId: peerIdFromPrivateKey(privateKey).toString(),
    publicKey: ownPublicKey.raw,
    privateKey,
    // libp2p may sign synchronously (Node's crypto) or asynchronously (WebCrypto); keep the
    // synchronous case off the microtask queue since the P2P layer signs per message.
    sign: (data) =>
      Effect.suspend(() => {
        const signature = privateKey.sign(data)
        return signature instanceof Uint8Array ? Effect.succeed(signature) : Effect.promise(() => signature)
      }),
    // Verification is a predicate: a malformed key or signature is simply "not valid", never
    // an error the caller has to handle.
    verify: (data, signature, publicKey) =>
      Effect.suspend(() => {
        if (publicKey !== undefined && publicKey.length !== ED25519_PUBLIC_KEY_LENGTH) {
          return Effect.succeed(false)
        }
        return Effect.tryPromise(async () => {
          const key = publicKey === undefined ? ownPublicKey : publicKeyFromRaw(publicKey)
          return (await key.verify(data, signature)) === true
        })
      }).pipe(Effect.orElseSucceed(() => false))
  }
}

const decodeKey = (path: string, bytes: Uint8Array): Effect.Effect<Ed25519PrivateKey, IdentityError> =>
  Effect.try({
    try: () => privateKeyFromProtobuf(bytes),
    catch: (cause) =>
      new IdentityError({
        path,
        reason: `the file is not a libp2p protobuf-encoded private key (${String(cause)}); ${MOVE_AWAY_ADVICE}`
      })
  }).pipe(
    Effect.filterOrFail(
      (key): key is Ed25519PrivateKey => key.type === "Ed25519",
      (key) =>
        new IdentityError({
          path,
          reason: `the file holds a ${key.type} key, not Ed25519; ${MOVE_AWAY_ADVICE}`
        })
    )
  )

/** Reads an existing key file, tightening its permissions first if others could read it. */
const loadKey = (fs: FileSystem.FileSystem, path: string) =>
  Effect.gen(function* () {
    const info = yield* fs.stat(path)
    if (info.type !== "File") {
      return yield* new IdentityError({ path, reason: `expected a regular file, found a ${info.type}` })
    }
    // A private key readable by group/others is a leak waiting to happen; fix it rather than
    // refuse to start, so an operator who copied the file carelessly is not locked out.
    if ((info.mode & 0o077) !== 0) {
      yield* fs.chmod(path, 0o600)
      yield* Effect.logWarning(
        `identity key ${path} had permissions ${(info.mode & 0o777).toString(8).padStart(4, "0")}; changed to 0600`
      )
    }
    const bytes = yield* fs.readFile(path)
    return yield* decodeKey(path, bytes)
  }).pipe(
    Effect.catchTag(
      "SystemError",
      "BadArgument",
      (error) =>
        new IdentityError({
          path,
          reason: `cannot read the key file (${error.message}); fix its ownership/permissions, or ${MOVE_AWAY_ADVICE}`
        })
    )
  )

/**
 * Writes a new key so that a crash never leaves a half-written identity.key behind: write and
 * fsync a temp file in the same directory (0600 from the start), then rename it into place.
 */
const writeKey = (fs: FileSystem.FileSystem, path: string, key: Ed25519PrivateKey) => {
  const temp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`
  return Effect.gen(function* () {
    yield* Effect.scoped(
      Effect.gen(function* () {
        const file = yield* fs.open(temp, { flag: "wx", mode: 0o600 })
        yield* file.writeAll(privateKeyToProtobuf(key))
        yield* file.sync
      })
    )
    // The umask can only narrow the mode, but make it exactly 0600 anyway.
    yield* fs.chmod(temp, 0o600)
    yield* fs.rename(temp, path)
  }).pipe(
    Effect.onError(() => fs.remove(temp, { force: true }).pipe(Effect.ignore)),
    Effect.mapError(failedTo(path, "write a new key file"))
  )
}

const loadOrCreate = (dataDir: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = NodePath.join(dataDir, KEY_FILE)
    yield* fs
      .makeDirectory(dataDir, { recursive: true, mode: 0o700 })
      .pipe(Effect.mapError(failedTo(dataDir, "create the data directory")))
    const exists = yield* fs
      .exists(path)
      .pipe(Effect.mapError(failedTo(path, "check whether the key file exists")))
    if (exists) {
      return make(yield* loadKey(fs, path))
    }
    const key = yield* Effect.promise(() => generateKeyPair("Ed25519"))
    yield* writeKey(fs, path, key)
    const identity = make(key)
    yield* Effect.logInfo(`created a new identity in ${path}: node ID ${identity.nodeId}`)
    return identity
  }).pipe(Effect.withSpan("Identity.load"))

/** Loads <dataDir>/identity.key or creates it on first start (mode 0600, written atomically: temp file + rename). */
export const layer = (options: {
  /** The node's data directory; created (0700) if missing. */
  readonly dataDir: string
}): Layer.Layer<Identity, IdentityError, FileSystem.FileSystem> =>
  Layer.effect(Identity, loadOrCreate(options.dataDir))

/** A fresh random key per build, for tests; optionally from a 32-byte seed so tests are deterministic. */
export const layerMemory = (options?: {
  /** 32 bytes; the same seed always gives the same key and node ID. */
  readonly seed?: Uint8Array
}): Layer.Layer<Identity> =>
  Layer.effect(
    Identity,
    Effect.suspend(() => {
      const seed = options?.seed
      if (seed === undefined) {
        return Effect.promise(() => generateKeyPair("Ed25519"))
      }
      // A wrong-length seed is a bug in the test itself, hence a defect rather than an error.
      if (seed.length !== ED25519_SEED_LENGTH) {
        return Effect.dieMessage(
          `Identity.layerMemory: seed must be ${ED25519_SEED_LENGTH} bytes, got ${seed.length}`
        )
      }
      return Effect.promise(() => generateKeyPairFromSeed("Ed25519", seed))
    }).pipe(Effect.map(make))
  )
