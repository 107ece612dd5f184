import { assert, describe, it } from "@effect/vitest"
import * as FastCheck from "effect/FastCheck"
import * as Framing from "../src/Framing.js"

const frames = (...pairs: ReadonlyArray<readonly [Framing.Kind, unknown]>) =>
  pairs.map(([kind, body]) => ({ kind, body }))

/** A header claiming `length` bytes of kind `kind`, with no body. */
const header = (length: number, kind: number) => {
  const bytes = Buffer.alloc(Framing.headerBytes)
  bytes.writeUInt32BE(length, 0)
  bytes.writeUInt8(kind, 4)
  return bytes
}

const frameError = (run: () => unknown): Framing.FrameError => {
  try {
    run()
  } catch (error) {
    assert.instanceOf(error, Framing.FrameError)
    return error as Framing.FrameError
  }
  return assert.fail("expected a FrameError")
}

describe("Framing", () => {
  it("a frame is u32 BE length (kind + body) | u8 kind | UTF-8 JSON", () => {
    const frame = Framing.encode(Framing.Kind.Call, [1, "échø", "m"])
    const json = JSON.stringify([1, "échø", "m"])
    assert.strictEqual(frame.readUInt32BE(0), 1 + Buffer.byteLength(json))
    assert.strictEqual(frame.readUInt8(4), Framing.Kind.Call)
    assert.strictEqual(frame.toString("utf8", 5), json)
  })

  it("decodes frames split at every byte boundary, multi-byte characters included", () => {
    const sent = frames(
      [Framing.Kind.Call, [7, "svc", "m", { text: "ünïcødé ✓" }]],
      [Framing.Kind.Reply, [7, 0, "ok"]]
    )
    const bytes = Buffer.concat(sent.map((frame) => Framing.encode(frame.kind, frame.body)))
    for (let cut = 0; cut <= bytes.length; cut++) {
      const decoder = new Framing.Decoder()
      const received = [...decoder.push(bytes.subarray(0, cut)), ...decoder.push(bytes.subarray(cut))]
      assert.deepStrictEqual(received, sent)
      assert.strictEqual(decoder.pending, 0)
      decoder.end()
    }
  })

  it("a length over the cap fails at the header, before any body arrives or is allocated", () => {
    const decoder = new Framing.Decoder(1024)
    const error = frameError(() => decoder.push(header(0xffffffff, Framing.Kind.Call)))
    assert.strictEqual(error.reason, "oversize")
    assert.include(error.message, "4294967295")
  })

  it("rejects an unknown kind, a zero length, a body that is not JSON, and a stream ending mid-frame", () => {
    assert.strictEqual(frameError(() => new Framing.Decoder().push(header(2, 99))).reason, "unknown-kind")
    assert.strictEqual(frameError(() => new Framing.Decoder().push(header(0, 1))).reason, "undecodable")
    const notJson = Buffer.concat([header(4, Framing.Kind.Call), Buffer.from("{no")])
    assert.strictEqual(frameError(() => new Framing.Decoder().push(notJson)).reason, "undecodable")
    const decoder = new Framing.Decoder()
    assert.deepStrictEqual(decoder.push(Framing.encode(Framing.Kind.Reply, [1, 0, 1]).subarray(0, 7)), [])
    const truncated = frameError(() => decoder.end())
    assert.strictEqual(truncated.reason, "truncated")
    assert.strictEqual(decoder.pending, 7)
  })

  it("pushEach hands over the frames before an invalid one, in order, then fails", () => {
    const good = Framing.encode(Framing.Kind.Reply, [1, 0, "a"])
    const seen: Array<unknown> = []
    const error = frameError(() =>
      new Framing.Decoder().pushEach(Buffer.concat([good, good, header(9, 99)]), (_kind, body) => {
        seen.push(body)
      })
    )
    assert.strictEqual(error.reason, "unknown-kind")
    assert.deepStrictEqual(seen, [
      [1, 0, "a"],
      [1, 0, "a"]
    ])
  })

  describe("Batch", () => {
    it("lays its frames out exactly as their single encodings, in order, and is empty after", () => {
      const sent = frames(
        [Framing.Kind.Call, [1, "a", "m", { x: "é" }]],
        [Framing.Kind.Cancel, [1]],
        [Framing.Kind.Call, [2, "b", "n"]]
      )
      const batch = new Framing.Batch()
      for (const frame of sent) assert.isTrue(batch.add(frame.kind, frame.body))
      assert.strictEqual(batch.size, 3)
      const expected = Buffer.concat(sent.map((frame) => Framing.encode(frame.kind, frame.body)))
      assert.strictEqual(batch.byteLength, expected.length)
      assert.deepStrictEqual(batch.take(), expected)
      assert.strictEqual(batch.size, 0)
      assert.strictEqual(batch.byteLength, 0)
      assert.strictEqual(batch.take().length, 0)
    })

    it("refuses a frame over the cap and keeps the frames queued before it", () => {
      const batch = new Framing.Batch(64)
      assert.isTrue(batch.add(Framing.Kind.Reply, [1, 0, "small"]))
      assert.isFalse(batch.add(Framing.Kind.Reply, [2, 0, "x".repeat(64)]))
      // 63 bytes of body plus the kind byte is exactly the cap.
      assert.isTrue(batch.add(Framing.Kind.Reply, "y".repeat(61)))
      const decoded = new Framing.Decoder(64).push(batch.take())
      assert.deepStrictEqual(
        decoded,
        frames([Framing.Kind.Reply, [1, 0, "small"]], [Framing.Kind.Reply, "y".repeat(61)])
      )
    })

    it("whatever JSON values are batched, the decoder gives them back in order", () => {
      FastCheck.assert(
        FastCheck.property(
          FastCheck.array(FastCheck.tuple(FastCheck.constantFrom(1, 2, 4, 5, 6), FastCheck.jsonValue()), {
            maxLength: 20
          }),
          FastCheck.integer({ min: 1, max: 64 }),
          (pairs, slice) => {
            const batch = new Framing.Batch()
            for (const [kind, body] of pairs) assert.isTrue(batch.add(kind as Framing.Kind, body))
            const bytes = batch.take()
            const decoder = new Framing.Decoder()
            const received: Array<Framing.Frame> = []
            for (let at = 0; at < bytes.length; at += slice)
              received.push(...decoder.push(bytes.subarray(at, at + slice)))
            // JSON has no -0: it comes back as 0, as it would from JSON.parse(JSON.stringify(value)).
            assert.deepStrictEqual(
              received,
              pairs.map(([kind, body]) => ({ kind, body: JSON.parse(JSON.stringify(body)) }))
            )
          }
        )
      )
    })
  })
})
