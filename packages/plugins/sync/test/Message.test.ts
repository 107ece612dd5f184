/** The wire format: what is encoded decodes back, messages stay within bounds, garbage is refused. */
import { assert, describe, it } from "@effect/vitest"
import * as Either from "effect/Either"
import type { Version } from "../src/internal/hlc.js"
import * as Message from "../src/internal/message.js"

const encoder = new TextEncoder()
const json = (value: unknown) => encoder.encode(JSON.stringify(value))

const version = (millis: number, node = "12D3KooWNode"): Version => ({ millis, counter: millis % 3, node })

const decodeOrThrow = (bytes: Uint8Array): Message.Decoded =>
  Either.getOrThrowWith(Message.decode(bytes), (error) => new Error(error))

const records = (count: number, valueBytes: number): Array<Message.SyncRecord> =>
  Array.from({ length: count }, (_, i) => ({
    key: `key-${String(i).padStart(4, "0")}`,
    version: version(1000 + i, i % 2 === 0 ? "12D3KooWA" : "12D3KooWB"),
    prev: i % 3 === 0 ? null : version(900 + i),
    value: i % 5 === 4 ? null : new Uint8Array(valueBytes).fill(i % 256)
  }))

describe("sync messages", () => {
  it("records: split within the byte and count limits, and decode to what was sent", () => {
    const input = records(50, 700)
    const limits = { maxBytes: 8192, maxItems: 8 }
    const { messages, oversize } = Message.encodeRecords(input, limits)
    assert.deepStrictEqual(oversize, [])
    assert.isAbove(messages.length, 50 / 8)
    const received: Array<Message.SyncRecord> = []
    for (const message of messages) {
      assert.isAtMost(message.byteLength, limits.maxBytes)
      const decoded = decodeOrThrow(message)
      assert.strictEqual(decoded._tag, "Records")
      if (decoded._tag !== "Records") continue
      assert.isAtMost(decoded.records.length, limits.maxItems)
      received.push(...decoded.records)
    }
    assert.deepStrictEqual(received, input)
  })

  it("records: one too large for any message is reported, the others still go", () => {
    const input = [
      ...records(2, 10),
      { key: "huge", version: version(5), prev: null, value: new Uint8Array(10_000) }
    ]
    const { messages, oversize } = Message.encodeRecords(input, { maxBytes: 4096, maxItems: 100 })
    assert.deepStrictEqual(oversize, ["huge"])
    const decoded = messages.map(decodeOrThrow)
    assert.deepStrictEqual(
      decoded.flatMap((message) => (message._tag === "Records" ? message.records.map((r) => r.key) : [])),
      ["key-0000", "key-0001"]
    )
  })

  it("digests: consecutive ranges cover every key once, within limits, the last one unbounded", () => {
    const keys = Array.from(
      { length: 300 },
      (_, i) => `k${String(i).padStart(3, "0")}${"x".repeat(i % 40)}`
    ).sort()
    // Some keys have no version (e.g. dropped meanwhile): they are skipped but still inside a range.
    const versionOf = (key: string) =>
      key.endsWith("7") ? undefined : version(key.length, `node-${key.length % 3}`)
    const limits = { maxBytes: 2048, maxItems: 40 }
    const covered: Array<string> = []
    let from = 0
    let previousUpTo: string | null = null
    let last = false
    let count = 0
    while (!last) {
      const { message, next } = Message.encodeDigest(7, keys, from, versionOf, limits)
      assert.isAtMost(message.byteLength, limits.maxBytes)
      assert.isAbove(next, from)
      const digest = decodeOrThrow(message)
      assert.strictEqual(digest._tag, "Digest")
      if (digest._tag !== "Digest") return
      assert.strictEqual(digest.round, 7)
      assert.strictEqual(digest.after, previousUpTo)
      assert.isAtMost(digest.entries.length, limits.maxItems)
      for (const entry of digest.entries) {
        assert.deepStrictEqual(entry.version, versionOf(entry.key))
        covered.push(entry.key)
      }
      previousUpTo = digest.upTo
      last = digest.upTo === null
      assert.strictEqual(last, next === keys.length)
      from = next
      count++
    }
    assert.isAbove(count, 1)
    assert.deepStrictEqual(
      covered,
      keys.filter((key) => versionOf(key) !== undefined)
    )
  })

  it("an empty namespace's digest is one message covering everything", () => {
    const { message, next } = Message.encodeDigest(1, [], 0, () => undefined, {
      maxBytes: 4096,
      maxItems: 10
    })
    assert.strictEqual(next, 0)
    assert.deepStrictEqual(decodeOrThrow(message), {
      _tag: "Digest",
      round: 1,
      after: null,
      upTo: null,
      entries: []
    })
  })

  it("Done round-trips", () => {
    assert.deepStrictEqual(decodeOrThrow(Message.encodeDone(42)), { _tag: "Done", round: 42 })
  })

  it("garbage is rejected with a reason, never thrown", () => {
    const bad: ReadonlyArray<[string, Uint8Array]> = [
      ["empty", new Uint8Array()],
      ["invalid UTF-8", new Uint8Array([0xff, 0xfe, 0x7b])],
      ["not JSON", encoder.encode("{ nope")],
      ["a JSON number", json(42)],
      ["unknown tag", json({ _tag: "Gossip", round: 1 })],
      ["negative round", json({ _tag: "Done", round: -1 })],
      ["fractional round", json({ _tag: "Done", round: 1.5 })],
      ["extra field", json({ _tag: "Done", round: 1, sneaky: true })],
      [
        "record value not base64",
        json({ _tag: "Records", records: [{ key: "a", version: [1, 0, "n"], prev: null, value: "!!" }] })
      ],
      [
        "a clock counter past its bound",
        json({
          _tag: "Records",
          records: [{ key: "a", version: [1, 2 ** 40, "n"], prev: null, value: null }]
        })
      ],
      ["record without version", json({ _tag: "Records", records: [{ key: "a", prev: null, value: null }] })],
      [
        "record with an empty key",
        json({ _tag: "Records", records: [{ key: "", version: [1, 0, "n"], prev: null, value: null }] })
      ],
      [
        "version with an empty node",
        json({ _tag: "Records", records: [{ key: "a", version: [1, 0, ""], prev: null, value: null }] })
      ],
      [
        "digest node index out of range",
        json({ _tag: "Digest", round: 1, after: null, upTo: null, nodes: ["n"], entries: [["a", 1, 0, 1]] })
      ],
      [
        "digest entry outside its range",
        json({ _tag: "Digest", round: 1, after: "m", upTo: "p", nodes: ["n"], entries: [["a", 1, 0, 0]] })
      ],
      [
        "digest range inverted",
        json({ _tag: "Digest", round: 1, after: "p", upTo: "m", nodes: [], entries: [] })
      ]
    ]
    for (const [what, bytes] of bad) {
      const result = Message.decode(bytes)
      assert.isTrue(Either.isLeft(result), `${what} was accepted`)
      if (Either.isLeft(result)) assert.isAbove(result.left.length, 0)
    }
  })
})
