/** The clock and the conflict rule: pure functions every node applies identically. */
import { assert, describe, it } from "@effect/vitest"
import * as FastCheck from "effect/FastCheck"
import * as Hlc from "../src/internal/hlc.js"

const v = (millis: number, counter: number, node: string): Hlc.Version => ({ millis, counter, node })

/** A write: its version, and the version it replaced on its writer (what the writer had seen). */
interface Write extends Hlc.Held {
  readonly value: string
}

/** What one node ends with after receiving `writes` in this order, applying the rule. */
const replay = (writes: ReadonlyArray<Write>) => {
  const held = new Map<string, Write>()
  for (const write of writes) {
    const key = write.value.split(":")[0] as string
    const decision = Hlc.decide(held.get(key), write)
    if (decision._tag === "Apply") held.set(key, write)
  }
  return new Map(
    [...held].map(([key, write]) => [key, { value: write.value, version: Hlc.format(write.version) }])
  )
}

const arbitraryVersion = FastCheck.record({
  // Few distinct values, so equal milliseconds and counters (the tie-breaks) are common.
  millis: FastCheck.integer({ min: 1, max: 4 }),
  counter: FastCheck.integer({ min: 0, max: 2 }),
  node: FastCheck.constantFrom("12D3KooWA", "12D3KooWB", "12D3KooWb", "12D3KooWC")
})

/** Writes of a few keys by a few nodes, versions unique (a node never reuses one). */
const arbitraryWrites = FastCheck.uniqueArray(
  FastCheck.record({ key: FastCheck.constantFrom("a", "b", "c"), version: arbitraryVersion }),
  { minLength: 1, maxLength: 24, selector: (write) => Hlc.format(write.version) }
).map((writes) =>
  writes.map(
    (write): Write => ({
      version: write.version,
      prev: null,
      deleted: write.version.counter === 2,
      value: `${write.key}:${Hlc.format(write.version)}`
    })
  )
)

describe("hybrid logical clock", () => {
  it("tick: follows the wall clock, and counts when it stands still or goes backwards", () => {
    assert.deepStrictEqual(Hlc.tick(Hlc.zero, 1000), { millis: 1000, counter: 0 })
    assert.deepStrictEqual(Hlc.tick({ millis: 1000, counter: 0 }, 1000), { millis: 1000, counter: 1 })
    // The wall clock stepped back: time as the clock knows it does not.
    assert.deepStrictEqual(Hlc.tick({ millis: 1000, counter: 1 }, 400), { millis: 1000, counter: 2 })
    assert.deepStrictEqual(Hlc.tick({ millis: 1000, counter: 7 }, 1001), { millis: 1001, counter: 0 })
  })

  it("receive: the next local tick orders after both the local clock and the remote timestamp", () => {
    const cases: ReadonlyArray<[Hlc.Timestamp, Hlc.Timestamp, number]> = [
      [{ millis: 10, counter: 0 }, { millis: 20, counter: 5 }, 15], // remote ahead
      [{ millis: 20, counter: 5 }, { millis: 20, counter: 9 }, 3], // same millis, wall clock behind
      [{ millis: 20, counter: 9 }, { millis: 20, counter: 5 }, 20],
      [{ millis: 20, counter: 1 }, { millis: 10, counter: 3 }, 30] // wall clock ahead of both
    ]
    for (const [clock, remote, now] of cases) {
      const after = Hlc.receive(clock, remote, now)
      assert.isAbove(Hlc.compareTimestamps(after, clock), 0)
      assert.isAbove(Hlc.compareTimestamps(after, remote), 0)
      assert.isAbove(Hlc.compareTimestamps(Hlc.tick(after, now), remote), 0)
    }
  })

  it.prop(
    "receive then tick is monotonic whatever the clocks say",
    [
      FastCheck.record({ millis: FastCheck.nat(100), counter: FastCheck.nat(5) }),
      FastCheck.record({ millis: FastCheck.nat(100), counter: FastCheck.nat(5) }),
      FastCheck.nat(100)
    ],
    ([clock, remote, now]) => {
      const next = Hlc.tick(Hlc.receive(clock, remote, now), now)
      assert.isAbove(Hlc.compareTimestamps(next, clock), 0)
      assert.isAbove(Hlc.compareTimestamps(next, remote), 0)
      assert.isAtLeast(next.millis, now)
    }
  )

  it("versions order by milliseconds, then counter, then node id (code units)", () => {
    const ordered = [
      v(1, 0, "12D3KooWZ"),
      v(1, 1, "12D3KooWA"),
      v(2, 0, "12D3KooWA"),
      v(2, 0, "12D3KooWB"),
      // Upper case sorts before lower case: a byte-wise rule, not a locale's.
      v(2, 0, "12D3KooWb")
    ]
    for (let i = 0; i < ordered.length; i++) {
      for (let j = 0; j < ordered.length; j++) {
        assert.strictEqual(
          Hlc.compare(ordered[i] as Hlc.Version, ordered[j] as Hlc.Version),
          Math.sign(i - j),
          `${i} vs ${j}`
        )
      }
    }
  })
})

describe("last writer wins", () => {
  it("applies newer, keeps older, ignores the same version", () => {
    const older: Hlc.Held = { version: v(5, 0, "A"), prev: null, deleted: false }
    const newer: Hlc.Held = { version: v(5, 0, "B"), prev: null, deleted: true }
    assert.strictEqual(Hlc.decide(undefined, older)._tag, "Apply")
    assert.strictEqual(Hlc.decide(older, newer)._tag, "Apply")
    assert.strictEqual(Hlc.decide(newer, older)._tag, "Keep")
    assert.strictEqual(Hlc.decide(newer, newer)._tag, "Same")
  })

  it("a conflict is two writes neither of whose writers had seen the other", () => {
    const first: Hlc.Held = { version: v(1, 0, "A"), prev: null, deleted: false }
    // B had first when it wrote: a later write, not a conflict, on whichever side it is seen.
    const successor: Hlc.Held = { version: v(2, 0, "B"), prev: first.version, deleted: false }
    assert.deepStrictEqual(Hlc.decide(first, successor), { _tag: "Apply", conflict: false })
    assert.deepStrictEqual(Hlc.decide(successor, first), { _tag: "Keep", conflict: false })
    // C also wrote over `first`, concurrently with B: a conflict, won by the greater version (C).
    const concurrent: Hlc.Held = { version: v(2, 0, "C"), prev: first.version, deleted: false }
    assert.deepStrictEqual(Hlc.decide(successor, concurrent), { _tag: "Apply", conflict: true })
    assert.deepStrictEqual(Hlc.decide(concurrent, successor), { _tag: "Keep", conflict: true })
  })

  it.prop(
    "every order of arrival ends with the same record per key: the greatest version",
    [arbitraryWrites, FastCheck.integer({ min: 0, max: 1_000_000 })],
    ([writes, seed]) => {
      const expected = replay(writes)
      for (const [key, { version }] of expected) {
        const greatest = writes
          .filter((write) => write.value.startsWith(`${key}:`))
          .reduce((best, write) => Hlc.max(best, write.version), v(0, 0, ""))
        assert.strictEqual(version, Hlc.format(greatest))
      }
      // Several shuffles (a seeded Fisher-Yates), and the reverse order.
      let state = seed
      const random = () => {
        state = (state * 1_103_515_245 + 12_345) % 2_147_483_648
        return state / 2_147_483_648
      }
      const orders = [[...writes].reverse()]
      for (let n = 0; n < 5; n++) {
        const shuffled = [...writes]
        for (let i = shuffled.length - 1; i > 0; i--) {
          const j = Math.floor(random() * (i + 1))
          ;[shuffled[i], shuffled[j]] = [shuffled[j] as Write, shuffled[i] as Write]
        }
        orders.push(shuffled)
      }
      for (const order of orders) assert.deepStrictEqual(replay(order), expected)
    }
  )

  it.prop(
    "redelivery changes nothing: applying any write again after all of them is a no-op",
    [arbitraryWrites],
    ([writes]) => {
      const once = replay(writes)
      assert.deepStrictEqual(replay([...writes, ...writes]), once)
    }
  )
})
