/**
 * Two and three whole nodes in one process, on libp2p's memory transport, each running the sync
 * plugin compiled in. Every write goes through a node's core Storage (as another plugin or the
 * operator would); the plugin notices it through the storage hooks.
 */
import * as StorageBackend from "@blackhole/core/StorageBackend"
import * as Hooks from "@blackhole/sdk/Hooks"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { protocol, type RecordInfo } from "../src/contract.js"
import * as Hlc from "../src/internal/hlc.js"
import { connect, converged, eventsOf, eventually, seed, startNode, type TestNode } from "./support.js"

/** Waits until `node` has versioned its own write of `key` (its hook noticed it), and returns the version. */
const ownVersion = (node: TestNode, key: string) =>
  eventually(
    Effect.map(node.sync.inspect({ key }), (info) => (info?.version.node === node.nodeId ? info : undefined)),
    `${node.name} to version its write of ${key}`
  )

const versionOf = (info: RecordInfo | null): Hlc.Version => {
  if (info === null) throw new Error("no version")
  return info.version
}

describe("sync between nodes in one process", () => {
  it.scopedLive("two nodes: connect, exchange both ways, push live writes and deletes, disconnect", () =>
    Effect.gen(function* () {
      const a = yield* startNode({ name: "a" })
      const b = yield* startNode({ name: "b" })
      yield* a.put("from-a", "1")
      yield* a.put("gone", "soon")
      yield* b.put("from-b", "2")
      yield* ownVersion(a, "from-a")
      yield* ownVersion(b, "from-b")

      yield* connect(a, b)
      const contents = yield* converged([a, b], "a and b to exchange what they wrote apart")
      assert.deepStrictEqual(contents, [
        ["from-a", "1"],
        ["from-b", "2"],
        ["gone", "soon"]
      ])
      // Both saw the connection, and each completed a round with the other.
      for (const [node, other] of [
        [a, b],
        [b, a]
      ] as const) {
        assert.isTrue(
          eventsOf(node, "p2p.peer.connected").some(
            (event) => (event.data as { peerId: string }).peerId === other.nodeId
          )
        )
        yield* eventually(
          Effect.sync(() =>
            eventsOf(node, "sync.peer.synced").find(
              (event) => (event.data as { peer: string }).peer === other.nodeId
            )
          ),
          `${node.name} to complete a round with ${other.name}`
        )
      }
      const applied = eventsOf(b, "sync.applied").map((event) => event.data as { key: string; from: string })
      assert.deepStrictEqual(applied.map((data) => data.key).sort(), ["from-a", "gone"])
      assert.isTrue(applied.every((data) => data.from === a.nodeId))
      assert.isTrue(eventsOf(b, "sync.applied").every((event) => event.source === "dev.blackhole.sync"))
      // The record keeps its writer's version on the other node.
      assert.deepStrictEqual(
        yield* b.sync.inspect({ key: "from-a" }),
        yield* a.sync.inspect({ key: "from-a" })
      )

      // Connected: writes and deletes are pushed at once, no anti-entropy round needed (60 s away).
      yield* b.put("live", "pushed")
      yield* a.remove("gone")
      yield* b.put("from-a", "overwritten by b")
      assert.deepStrictEqual(yield* converged([a, b], "live writes to reach the other node"), [
        ["from-a", "overwritten by b"],
        ["from-b", "2"],
        ["live", "pushed"]
      ])
      const tombstone = yield* eventually(
        Effect.map(b.sync.inspect({ key: "gone" }), (info) => (info?.deleted === true ? info : undefined)),
        "b to hold the tombstone of gone"
      )
      assert.strictEqual(tombstone.version.node, a.nodeId)
      // b overwrote a value it had from a: a later write, not a conflict.
      assert.deepStrictEqual(eventsOf(a, "sync.conflict"), [])

      const status = yield* a.sync.status()
      assert.strictEqual(status.namespace, "shared")
      assert.strictEqual(status.records, 3)
      assert.strictEqual(status.tombstones, 1)
      const peer = status.peers.find((entry) => entry.peerId === b.nodeId)
      assert.isTrue(peer?.connected)
      assert.isAtLeast(peer?.rounds ?? 0, 1)
      assert.isNotNull(peer?.lastSyncAt ?? null)
      assert.isAtLeast(peer?.recordsApplied ?? 0, 3)

      // syncNow starts a round with the connected peers.
      const before = eventsOf(a, "sync.peer.synced").length
      assert.deepStrictEqual((yield* a.sync.syncNow(null)).peers, [b.nodeId])
      yield* eventually(
        Effect.sync(() => (eventsOf(a, "sync.peer.synced").length > before ? true : undefined)),
        "the round syncNow started to complete"
      )

      yield* a.p2p.hangUp(b.nodeId).pipe(Effect.orDie)
      for (const [node, other] of [
        [a, b],
        [b, a]
      ] as const) {
        yield* eventually(
          Effect.sync(() =>
            eventsOf(node, "p2p.peer.disconnected").find(
              (event) => (event.data as { peerId: string }).peerId === other.nodeId
            )
          ),
          `${node.name} to see ${other.name} leave`
        )
        yield* eventually(
          Effect.map(node.sync.status(), (s) =>
            s.peers.find((entry) => entry.peerId === other.nodeId)?.connected === false ? true : undefined
          ),
          `${node.name}'s sync to mark ${other.name} disconnected`
        )
      }
      assert.deepStrictEqual((yield* a.sync.syncNow(null)).peers, [])
    })
  )

  it.scopedLive(
    "three nodes: conflicting writes to the same keys made apart converge on the version the rule picks",
    () =>
      Effect.gen(function* () {
        const nodes = [
          yield* startNode({ name: "a" }),
          yield* startNode({ name: "b" }),
          yield* startNode({ name: "c" })
        ]
        const [a, b, c] = nodes as [TestNode, TestNode, TestNode]
        const keys = Array.from({ length: 8 }, (_, i) => `k${i}`)
        // Each node writes every key, in a different order, not yet connected: all writes concurrent.
        const written = new Map<string, Map<string, Hlc.Version>>()
        for (const [n, node] of nodes.entries()) {
          const order = n === 1 ? [...keys].reverse() : keys
          for (const key of order) yield* node.put(key, `${node.name}:${key}`)
        }
        for (const node of nodes) {
          for (const key of keys) {
            const info = yield* ownVersion(node, key)
            const versions = written.get(key) ?? new Map<string, Hlc.Version>()
            versions.set(node.name, info.version)
            written.set(key, versions)
          }
        }

        // A line: a — b — c. What c learns of a's writes, it learns through b.
        yield* connect(a, b)
        yield* connect(c, b)
        const contents = yield* converged(nodes, "the three nodes to agree on every key")
        assert.strictEqual(contents.length, keys.length)
        for (const [key, value] of contents) {
          const versions = [...(written.get(key) ?? new Map<string, Hlc.Version>())]
          // The winner is the greatest (HLC, node id) among the three writes.
          const [winnerName, winnerVersion] = versions.reduce((best, entry) =>
            Hlc.compare(entry[1], best[1]) > 0 ? entry : best
          )
          assert.strictEqual(value, `${winnerName}:${key}`, `the value of ${key}`)
          // And every node holds that version for it: identical metadata everywhere.
          yield* eventually(
            Effect.gen(function* () {
              const held = yield* Effect.forEach(nodes, (node) => node.sync.inspect({ key }))
              return held.every((info) => info !== null && Hlc.equals(versionOf(info), winnerVersion))
                ? true
                : undefined
            }),
            `every node to hold ${Hlc.format(winnerVersion)} for ${key}`
          )
        }
        // Conflicts were reported where two of the writes met, naming the greater one the winner.
        const conflicts = nodes.flatMap((node) => eventsOf(node, "sync.conflict"))
        assert.isAbove(conflicts.length, 0)
        for (const event of conflicts) {
          const data = event.data as { key: string; winner: string; loser: string }
          const versions = [...(written.get(data.key)?.values() ?? [])]
          const winner = versions.find((version) => Hlc.format(version) === data.winner)
          const loser = versions.find((version) => Hlc.format(version) === data.loser)
          assert.isDefined(winner, `${data.winner} is one of the writes of ${data.key}`)
          assert.isDefined(loser, `${data.loser} is one of the writes of ${data.key}`)
          if (winner !== undefined && loser !== undefined) assert.strictEqual(Hlc.compare(winner, loser), 1)
        }
      })
  )

  it.scopedLive(
    "three connected nodes writing the same keys at once converge, each key on its winner's value",
    () =>
      Effect.gen(function* () {
        const nodes = [
          yield* startNode({ name: "a" }),
          yield* startNode({ name: "b" }),
          yield* startNode({ name: "c" })
        ]
        const [a, b, c] = nodes as [TestNode, TestNode, TestNode]
        yield* connect(a, b)
        yield* connect(b, c)
        yield* connect(c, a)
        yield* eventually(
          Effect.map(
            Effect.forEach(nodes, (node) => node.sync.status()),
            (all) =>
              all.every((status) => status.peers.filter((peer) => peer.connected).length === 2)
                ? true
                : undefined
          ),
          "every node to see the other two"
        )
        const keys = Array.from({ length: 20 }, (_, i) => `m${i}`)
        yield* Effect.forEach(
          nodes,
          (node) => Effect.forEach(keys, (key) => node.put(key, `${node.nodeId}|${key}`), { discard: true }),
          { concurrency: "unbounded", discard: true }
        )
        const contents = yield* converged(nodes, "the concurrent writes to settle")
        assert.strictEqual(contents.length, keys.length)
        for (const [key, value] of contents) {
          const infos = yield* eventually(
            Effect.gen(function* () {
              const held = yield* Effect.forEach(nodes, (node) => node.sync.inspect({ key }))
              const first = held[0]
              return first != null &&
                held.every((info) => info !== null && Hlc.equals(versionOf(info), versionOf(first)))
                ? held
                : undefined
            }),
            `the versions of ${key} to agree`
          )
          // The value is the one its version's writer wrote.
          assert.strictEqual(value, `${versionOf(infos[0] ?? null).node}|${key}`)
        }
      })
  )

  it.scopedLive(
    "a node that was down catches up on writes, overwrites and deletes; its own offline writes go out",
    () =>
      Effect.gen(function* () {
        const disk = yield* StorageBackend.makeMemory()
        const a = yield* startNode({ name: "a" })
        const b = yield* startNode({ name: "b" })
        let c = yield* startNode({ name: "c", backend: disk, seed: seed(3) })
        const cId = c.nodeId
        yield* connect(a, b)
        yield* connect(c, a)
        yield* connect(c, b)
        yield* a.put("keep", "v1")
        yield* b.put("change", "v1")
        yield* c.put("drop", "v1")
        yield* converged([a, b, c], "the first writes to reach everyone")

        // c goes down; the others carry on.
        yield* c.close
        yield* a.put("change", "v2 while c was down")
        yield* b.remove("drop")
        yield* b.put("new", "written while c was down")
        yield* converged([a, b], "a and b to agree while c is down")

        // c comes back on the same disk, first without sync running, and is written to meanwhile.
        c = yield* startNode({ name: "c", backend: disk, seed: seed(3), syncDisabled: true })
        assert.strictEqual(c.nodeId, cId)
        assert.deepStrictEqual(yield* c.contents, [
          ["change", "v1"],
          ["drop", "v1"],
          ["keep", "v1"]
        ])
        yield* c.put("offline", "written on c while its sync was stopped")
        yield* connect(c, a)
        yield* connect(c, b)
        yield* c.manager.start("dev.blackhole.sync").pipe(Effect.orDie)
        assert.deepStrictEqual(
          yield* converged([a, b, c], "c to catch up, and its offline write to reach the others"),
          [
            ["change", "v2 while c was down"],
            ["keep", "v1"],
            ["new", "written while c was down"],
            ["offline", "written on c while its sync was stopped"]
          ]
        )
        const offline = yield* c.sync.inspect({ key: "offline" })
        assert.strictEqual(offline?.version.node, cId)
        assert.isTrue((yield* c.sync.inspect({ key: "drop" }))?.deleted)
      })
  )

  it.scopedLive("a peer sending garbage on the protocol is counted and ignored; sync carries on", () =>
    Effect.gen(function* () {
      const a = yield* startNode({ name: "a" })
      const b = yield* startNode({ name: "b" })
      yield* connect(a, b)
      yield* eventually(
        Effect.sync(() => (eventsOf(b, "sync.peer.synced").length > 0 ? true : undefined)),
        "a first round"
      )
      const encoder = new TextEncoder()
      for (const garbage of ["{ not json", JSON.stringify({ _tag: "Records", records: [{ key: "x" }] })]) {
        yield* a.p2p.send(b.nodeId, protocol, encoder.encode(garbage)).pipe(Effect.orDie)
      }
      yield* eventually(
        Effect.map(b.sync.status(), (status) =>
          (status.peers.find((peer) => peer.peerId === a.nodeId)?.rejected ?? 0) >= 2 ? true : undefined
        ),
        "b to reject both messages"
      )
      assert.deepStrictEqual(yield* b.contents, [])
      yield* a.put("after", "garbage")
      assert.deepStrictEqual(yield* converged([a, b], "sync to go on"), [["after", "garbage"]])
    })
  )

  it.scopedLive(
    "a large namespace travels in many bounded messages; a record too large for any is reported",
    () =>
      Effect.gen(function* () {
        const config = { maxMessageBytes: 4096, maxDigestEntries: 40, maxBatchRecords: 16 }
        const a = yield* startNode({ name: "a", config })
        const b = yield* startNode({ name: "b", config })
        const value = (n: number) => `${"v".repeat(150)}-${n}`
        yield* Effect.forEach(
          Array.from({ length: 300 }, (_, i) => i),
          (i) => a.put(`a/${String(i).padStart(3, "0")}`, value(i)),
          {
            concurrency: 8,
            discard: true
          }
        )
        yield* Effect.forEach(
          Array.from({ length: 200 }, (_, i) => i),
          (i) => b.put(`b/${String(i).padStart(3, "0")}`, value(i)),
          {
            concurrency: 8,
            discard: true
          }
        )
        yield* a.put("huge", "x".repeat(5000))
        yield* eventually(
          Effect.map(a.sync.status(), (status) =>
            status.records === 301 && status.pending === 0 ? true : undefined
          ),
          "a to version its writes"
        )
        yield* eventually(
          Effect.map(b.sync.status(), (status) =>
            status.records === 200 && status.pending === 0 ? true : undefined
          ),
          "b to version its writes"
        )
        yield* connect(a, b)
        const contents = yield* eventually(
          Effect.map(b.contents, (entries) => (entries.length === 500 ? entries : undefined)),
          "b to receive a's 300 records"
        )
        assert.isFalse(contents.some(([key]) => key === "huge"))
        yield* eventually(
          Effect.map(a.contents, (entries) => (entries.length === 501 ? true : undefined)),
          "a to receive b's 200 records"
        )
        const stats = yield* a.p2p.stats
        const traffic = stats.protocols["/blackhole/sync/1.0.0"]
        // 300 records in batches of at most 16, plus digests of at most 40 keys.
        assert.isAtLeast(traffic?.messagesOut ?? 0, 300 / 16 + 300 / 40)
        assert.isAtMost((traffic?.bytesOut ?? 0) / (traffic?.messagesOut ?? 1), 4096)
        assert.strictEqual(stats.badMessages.oversize, 0)
        assert.strictEqual((yield* b.p2p.stats).badMessages.oversize, 0)
        assert.isAtLeast((yield* a.sync.status()).oversize, 1)
      })
  )

  it.scopedLive("messages lost on the way are made up by the next anti-entropy round", () =>
    Effect.gen(function* () {
      const config = { antiEntropyIntervalMillis: 300 }
      const a = yield* startNode({ name: "a", config })
      const b = yield* startNode({ name: "b", config })
      yield* connect(a, b)
      yield* eventually(
        Effect.sync(() => (eventsOf(b, "sync.peer.synced").length > 0 ? true : undefined)),
        "a first round"
      )
      // b drops every sync message for a while (a protocol.before.message hook that vetoes).
      const lossy = yield* Scope.make()
      yield* b.hooks
        .register("protocol.before.message", "test", () => Hooks.veto("lost on the way"))
        .pipe(Scope.extend(lossy))
      yield* a.put("k", "sent while b was deaf")
      yield* eventually(
        Effect.map(a.sync.status(), (status) =>
          (status.peers.find((peer) => peer.peerId === b.nodeId)?.recordsSent ?? 0) > 0 ? true : undefined
        ),
        "a to push k"
      )
      assert.deepStrictEqual(yield* b.contents, [])
      yield* Scope.close(lossy, Exit.void)
      assert.deepStrictEqual(yield* converged([a, b], "anti-entropy to repair the loss"), [
        ["k", "sent while b was deaf"]
      ])
    })
  )

  it.scopedLive("the plugin in its own process syncs with a compiled-in one", () =>
    Effect.gen(function* () {
      const a = yield* startNode({ name: "a", subprocess: true })
      const b = yield* startNode({ name: "b" })
      const info = yield* a.manager.get("dev.blackhole.sync").pipe(Effect.orDie)
      assert.strictEqual(info.loader, "subprocess")
      assert.strictEqual(info.state, "running")
      yield* a.put("from-subprocess", "1")
      yield* b.put("from-inprocess", "2")
      yield* connect(b, a)
      assert.deepStrictEqual(yield* converged([a, b], "the two to exchange"), [
        ["from-inprocess", "2"],
        ["from-subprocess", "1"]
      ])
      yield* a.remove("from-inprocess")
      assert.deepStrictEqual(yield* converged([a, b], "a delete to travel"), [["from-subprocess", "1"]])
      // Its events reach the host's bus, stamped with the plugin as their source.
      yield* eventually(
        Effect.sync(() => eventsOf(a, "sync.applied").find((event) => event.source === "dev.blackhole.sync")),
        "a sync.applied event from the subprocess"
      )
    })
  )
})
