/**
 * The plugin on the SDK's in-memory test kit, granted exactly what its manifest requests: fake
 * `storage` and `p2p` services stand in for the node's, the hooks are run by the test, and peers'
 * messages are handed to its protocol handlers directly.
 */
import * as CoreServices from "@blackhole/sdk/CoreServices"
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
import { PluginTest } from "@blackhole/sdk/testing"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { Sync } from "../src/contract.js"
import definition from "../src/index.js"
import * as Hlc from "../src/internal/hlc.js"
import * as Message from "../src/internal/message.js"
import { bytes } from "./support.js"

const self = "12D3KooWTestNode"
const peer = "12D3KooWPeer"
const decoder = new TextDecoder()

/** The node's storage service, in memory: (namespace, key) → value. */
const fakeStorage = () => {
  const data = new Map<string, Uint8Array>()
  const id = (namespace: string, key: string) => `${namespace}\u0000${key}`
  let batches = 0
  const implementation = ServiceContract.implement(CoreServices.Storage, {
    retrieve: ({ namespace, key }) => Effect.sync(() => data.get(id(namespace, key)) ?? null),
    list: ({ namespace, prefix }) =>
      Effect.sync(() =>
        [...data.keys()]
          .filter((entry) => entry.startsWith(`${namespace}\u0000${prefix}`))
          .map((entry) => entry.slice(namespace.length + 1))
          .sort()
      ),
    capacity: () => Effect.succeed({ usedBytes: 0, totalBytes: null }),
    snapshot: () => Effect.succeed([]),
    store: ({ namespace, key, value }) => Effect.sync(() => void data.set(id(namespace, key), value)),
    delete: ({ namespace, key }) => Effect.sync(() => data.delete(id(namespace, key))),
    batch: ({ ops }) =>
      Effect.sync(() => {
        batches++
        for (const op of ops) {
          if (op._tag === "Put") data.set(id(op.namespace, op.key), op.value)
          else data.delete(id(op.namespace, op.key))
        }
      })
  })
  return {
    implementation,
    set: (key: string, value: string) => void data.set(id("shared", key), bytes(value)),
    remove: (key: string) => void data.delete(id("shared", key)),
    get: (key: string) => {
      const value = data.get(id("shared", key))
      return value === undefined ? undefined : decoder.decode(value)
    },
    batches: () => batches
  }
}

/** The node's p2p service: records what the plugin sends, decoded. */
const fakeP2P = () => {
  const sent: Array<{ readonly peer: string; readonly message: Message.Decoded }> = []
  const implementation = ServiceContract.implement(CoreServices.P2P, {
    info: () => Effect.succeed({ peerId: self, listen: [], peers: [] }),
    send: ({ protocol, peer, message }) =>
      Effect.sync(() => {
        assert.strictEqual(protocol, "sync")
        const decoded = Message.decode(message)
        if (Either.isLeft(decoded)) throw new Error(`the plugin sent an undecodable message: ${decoded.left}`)
        sent.push({ peer, message: decoded.right })
      })
  })
  return { implementation, sent }
}

const start = Effect.gen(function* () {
  const storage = fakeStorage()
  const p2p = fakeP2P()
  const running = yield* PluginTest.run(definition, {
    permissions: "manifest",
    services: [storage.implementation, p2p.implementation],
    nodeInfo: { nodeId: self }
  })
  return { ...running, storage, p2p, sync: running.client(Sync) }
})

const write = (key: string, principal = "operator", namespace = "shared") =>
  ({ namespace, key, value: bytes("ignored: the plugin reads storage"), principal }) as const

const records = (list: ReadonlyArray<Message.SyncRecord>) => {
  const { messages } = Message.encodeRecords(list, { maxBytes: 1 << 20, maxItems: 1000 })
  return messages[0] as Uint8Array
}

describe("sync plugin (test kit)", () => {
  it.scopedLive("versions writes its hooks notice; ignores its own writes and other namespaces", () =>
    Effect.gen(function* () {
      const { recorder, storage, sync } = yield* start
      const hooks = yield* recorder.hooks
      assert.deepStrictEqual(hooks.map((hook) => hook.name).sort(), [
        "storage.after.delete",
        "storage.after.write"
      ])

      storage.set("mine", "applied from a peer")
      yield* recorder.runHook("storage.after.write", write("mine", "dev.blackhole.sync"))
      yield* recorder.runHook("storage.after.write", write("elsewhere", "operator", "other"))
      storage.set("k", "by the operator")
      yield* recorder.runHook("storage.after.write", write("k"))
      const info = yield* PluginTest.eventually(
        Effect.flatMap(sync.inspect({ key: "k" }), (found) =>
          found === null ? Effect.fail("not yet") : Effect.succeed(found)
        )
      )
      assert.strictEqual(info.version.node, self)
      assert.isNull(info.prev)
      assert.isFalse(info.deleted)
      assert.isNull(yield* sync.inspect({ key: "mine" }))
      assert.isNull(yield* sync.inspect({ key: "elsewhere" }))

      // A delete becomes a tombstone: a newer version, replacing the write's.
      storage.remove("k")
      yield* recorder.runHook("storage.after.delete", {
        namespace: "shared",
        key: "k",
        principal: "operator"
      })
      const tombstone = yield* PluginTest.eventually(
        Effect.flatMap(sync.inspect({ key: "k" }), (found) =>
          found?.deleted === true ? Effect.succeed(found) : Effect.fail("not yet")
        )
      )
      assert.strictEqual(Hlc.compare(tombstone.version, info.version), 1)
      assert.deepStrictEqual(tombstone.prev, info.version)
      // Its version metadata is in its own storage.
      const stored = yield* recorder.stored
      assert.deepStrictEqual(
        stored.map(([key]) => key),
        ["v/k"]
      )
    })
  )

  it.scopedLive(
    "applies a peer's newer records in one batch, keeps its own newer ones and sends them back",
    () =>
      Effect.gen(function* () {
        const { handlers, recorder, storage, p2p, sync } = yield* start
        storage.set("ours", "local")
        yield* recorder.runHook("storage.after.write", write("ours"))
        const ours = yield* PluginTest.eventually(
          Effect.flatMap(sync.inspect({ key: "ours" }), (found) =>
            found === null ? Effect.fail("") : Effect.succeed(found)
          )
        )
        const older: Hlc.Version = { millis: ours.version.millis - 1, counter: 0, node: peer }
        const newer: Hlc.Version = { millis: ours.version.millis + 1, counter: 0, node: peer }
        yield* handlers.protocol.handleMessage(
          peer,
          records([
            { key: "theirs", version: newer, prev: null, value: bytes("remote") },
            { key: "ours", version: older, prev: null, value: bytes("stale") },
            { key: "gone", version: newer, prev: null, value: null }
          ])
        )
        assert.strictEqual(storage.get("theirs"), "remote")
        assert.strictEqual(storage.get("ours"), "local")
        assert.strictEqual(storage.batches(), 1)
        assert.deepStrictEqual(yield* sync.inspect({ key: "theirs" }), {
          key: "theirs",
          version: newer,
          prev: null,
          deleted: false
        })
        assert.isTrue((yield* sync.inspect({ key: "gone" }))?.deleted)
        const published = yield* recorder.published
        assert.deepStrictEqual(
          published
            .filter((event) => event.type === "sync.applied")
            .map((event) => (event.data as { key: string }).key),
          ["theirs", "gone"]
        )
        // The two writes of "ours" were concurrent (neither knew the other): a conflict, ours wins.
        assert.deepStrictEqual(
          published.filter((event) => event.type === "sync.conflict").map((event) => event.data),
          [{ key: "ours", from: peer, winner: Hlc.format(ours.version), loser: Hlc.format(older) }]
        )
        // The peer is sent our newer "ours".
        const back = yield* PluginTest.eventually(
          Effect.suspend(() => {
            const found = p2p.sent.find((entry) => entry.peer === peer && entry.message._tag === "Records")
            return found === undefined ? Effect.fail("") : Effect.succeed(found.message)
          })
        )
        assert.deepStrictEqual(back._tag === "Records" ? back.records.map((record) => record.key) : [], [
          "ours"
        ])
        // The same records again change nothing.
        yield* handlers.protocol.handleMessage(
          peer,
          records([{ key: "theirs", version: newer, prev: null, value: bytes("remote") }])
        )
        assert.strictEqual(storage.batches(), 1)
      })
  )

  it.scopedLive(
    "on connection it sends its digest; a peer's digest is answered with what it lacks, then Done",
    () =>
      Effect.gen(function* () {
        const { handlers, recorder, storage, p2p, sync } = yield* start
        for (const key of ["a", "b", "c"]) {
          storage.set(key, key.toUpperCase())
          yield* recorder.runHook("storage.after.write", write(key))
        }
        const versions = yield* PluginTest.eventually(
          Effect.flatMap(
            Effect.forEach(["a", "b", "c"], (key) => sync.inspect({ key })),
            (all) =>
              all.every((info) => info !== null)
                ? Effect.succeed(all.map((info) => info.version))
                : Effect.fail("")
          )
        )
        yield* handlers.protocol.onPeerConnected?.(peer) ?? Effect.void
        const digest = yield* PluginTest.eventually(
          Effect.suspend(() => {
            const found = p2p.sent.find((entry) => entry.message._tag === "Digest")
            return found === undefined ? Effect.fail("") : Effect.succeed(found.message)
          })
        )
        assert.deepStrictEqual(digest, {
          _tag: "Digest",
          round: 1,
          after: null,
          upTo: null,
          entries: ["a", "b", "c"].map((key, i) => ({ key, version: versions[i] as Hlc.Version }))
        })

        // The peer has "a" as we do, "b" older, and nothing else: it is sent b and c, then Done.
        p2p.sent.length = 0
        const digestFromPeer = Message.encodeDigest(
          7,
          ["a", "b"],
          0,
          (key) => (key === "a" ? versions[0] : { millis: 1, counter: 0, node: peer }),
          { maxBytes: 4096, maxItems: 100 }
        )
        yield* handlers.protocol.handleMessage(peer, digestFromPeer.message)
        yield* PluginTest.eventually(
          Effect.suspend(() =>
            p2p.sent.some((entry) => entry.message._tag === "Done") ? Effect.void : Effect.fail("")
          )
        )
        assert.deepStrictEqual(
          p2p.sent.map((entry) =>
            entry.message._tag === "Records"
              ? entry.message.records.map(
                  (record) => `${record.key}=${decoder.decode(record.value ?? new Uint8Array())}`
                )
              : entry.message._tag
          ),
          [["b=B", "c=C"], "Done"]
        )
        // Our round completes when the peer answers Done for it.
        yield* handlers.protocol.handleMessage(peer, Message.encodeDone(1))
        const status = yield* sync.status()
        assert.strictEqual(status.peers[0]?.rounds, 1)
        assert.isTrue(status.peers[0]?.connected)
        const synced = (yield* recorder.published).filter((event) => event.type === "sync.peer.synced")
        assert.deepStrictEqual(
          synced.map((event) => event.data),
          [{ peer, round: 1 }]
        )
        yield* handlers.protocol.onPeerDisconnected?.(peer) ?? Effect.void
        assert.isFalse((yield* sync.status()).peers[0]?.connected)
      })
  )
})
