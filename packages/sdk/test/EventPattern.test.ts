import { assert, describe, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as FastCheck from "effect/FastCheck"
import * as Schema from "effect/Schema"
import * as EventPattern from "../src/EventPattern.js"

// A small alphabet makes collisions (and so interesting cases) likely.
const literal = FastCheck.constantFrom("a", "b", "c")
const patternArb = FastCheck.array(FastCheck.oneof(literal, FastCheck.constant("*")), {
  minLength: 1,
  maxLength: 4
}).map((segments) => segments.join("."))
const typeArb = FastCheck.array(FastCheck.constantFrom("a", "b", "c", "d"), {
  minLength: 1,
  maxLength: 6
}).map((segments) => segments.join("."))

// Reference semantics as a regular expression: middle `*` is one segment, trailing `*` one or more.
const toRegExp = (pattern: string): RegExp => {
  const segments = pattern.split(".")
  const last = segments.length - 1
  const parts = segments.map((s, i) => (s !== "*" ? s : i === last ? "[^.]+(?:\\.[^.]+)*" : "[^.]+"))
  return new RegExp(`^${parts.join("\\.")}$`)
}

// Concrete types that `pattern` matches, built so that if `granted` fails to cover `pattern`
// one of them shows it: each `*` becomes a segment no pattern mentions, and the trailing `*`
// is instantiated with one and with two segments.
const witnesses = (pattern: string): ReadonlyArray<string> => {
  const segments = pattern.split(".").map((s) => (s === "*" ? "zz" : s))
  if (!pattern.endsWith("*")) return [segments.join(".")]
  return [segments.join("."), [...segments, "zz"].join(".")]
}

describe("EventPattern.matches", () => {
  const table: ReadonlyArray<readonly [string, string, boolean]> = [
    ["content.created", "content.created", true],
    ["content.created", "content.deleted", false],
    ["content.*", "content.created", true],
    ["content.*", "content.a.b", true],
    ["content.*", "content", false],
    ["content.*", "contentx.created", false],
    ["*", "content", true],
    ["*", "content.created", true],
    ["*", "a.b.c.d", true],
    ["a.*.c", "a.b.c", true],
    ["a.*.c", "a.b.d", false],
    ["a.*.c", "a.b.x.c", false],
    ["a.*.c", "a.c", false],
    ["*.created", "content.created", true],
    ["*.created", "a.b.created", false],
    ["a.*.*", "a.b.c", true],
    ["a.*.*", "a.b.c.d", true],
    ["a.*.*", "a.b", false],
    ["plugin.*", "plugin.running", true]
  ]
  for (const [pattern, type, expected] of table) {
    it(`${pattern} ${expected ? "matches" : "does not match"} ${type}`, () => {
      assert.strictEqual(EventPattern.matches(pattern, type), expected)
    })
  }

  it.prop(
    "agrees with the reference regular expression",
    { pattern: patternArb, type: typeArb },
    ({ pattern, type }) => {
      assert.strictEqual(EventPattern.matches(pattern, type), toRegExp(pattern).test(type))
    }
  )

  it.prop("a bare * matches every type", { type: typeArb }, ({ type }) => {
    assert.isTrue(EventPattern.matches("*", type))
  })
})

describe("EventPattern.covers", () => {
  const table: ReadonlyArray<readonly [string, string, boolean]> = [
    ["*", "content.created", true],
    ["*", "content.*", true],
    ["*", "*", true],
    ["*", "a.*.c", true],
    ["content.*", "content.created", true],
    ["content.*", "content.*", true],
    ["content.*", "content.a.*", true],
    ["content.*", "content.*.b", true],
    ["content.*", "content", false],
    ["content.*", "*", false],
    ["content.created", "content.*", false],
    ["content.created", "content.created", true],
    ["content.created", "content.deleted", false],
    ["a.*.c", "a.b.c", true],
    ["a.*.c", "a.*.c", true],
    ["a.*.c", "a.*", false],
    ["a.*.c", "a.b.*", false],
    ["a.b.c", "a.*.c", false],
    ["a.*", "*", false],
    ["a.*", "a.*.c", true],
    ["a.*.*", "a.*", false],
    ["a.*", "a.*.*", true],
    ["a.*.*", "a.b.*", true],
    // Middle `*` is exactly one segment; a trailing `*` is one or more.
    ["*.b", "*.*", false],
    ["*.*", "*.b", true],
    ["*.*", "*", false],
    ["*.b.*", "a.b.c.d", true],
    // Invalid patterns cover nothing and are covered by nothing.
    ["*", "", false],
    ["", "", false],
    ["a..b", "a..b", false],
    ["a:b", "a:b", false]
  ]
  for (const [granted, requested, expected] of table) {
    it(`${granted} ${expected ? "covers" : "does not cover"} ${requested}`, () => {
      assert.strictEqual(EventPattern.covers(granted, requested), expected)
    })
  }

  it.prop("is reflexive", { pattern: patternArb }, ({ pattern }) => {
    assert.isTrue(EventPattern.covers(pattern, pattern))
  })

  it.prop("* covers every pattern", { pattern: patternArb }, ({ pattern }) => {
    assert.isTrue(EventPattern.covers("*", pattern))
  })

  it.prop(
    "is sound: a covered pattern's types are all matched by the grant",
    { granted: patternArb, requested: patternArb, types: FastCheck.array(typeArb, { maxLength: 30 }) },
    ({ granted, requested, types }) => {
      if (!EventPattern.covers(granted, requested)) return
      for (const type of [...types, ...witnesses(requested)]) {
        if (EventPattern.matches(requested, type)) assert.isTrue(EventPattern.matches(granted, type), type)
      }
    }
  )

  it.prop(
    "is exact: when it says no, some type of the request escapes the grant",
    { granted: patternArb, requested: patternArb },
    ({ granted, requested }) => {
      const ws = witnesses(requested)
      for (const w of ws) assert.isTrue(EventPattern.matches(requested, w), w)
      assert.strictEqual(
        EventPattern.covers(granted, requested),
        ws.every((w) => EventPattern.matches(granted, w))
      )
    },
    { fastCheck: { numRuns: 1000 } }
  )

  it.prop(
    "is transitive",
    { a: patternArb, b: patternArb, c: patternArb },
    ({ a, b, c }) => {
      if (EventPattern.covers(a, b) && EventPattern.covers(b, c)) assert.isTrue(EventPattern.covers(a, c))
    },
    { fastCheck: { numRuns: 1000 } }
  )
})

describe("EventPattern.validate", () => {
  for (const pattern of ["content.created", "content.*", "*", "a.*.c", "A_b-9.x", "storage.before.write"]) {
    it(`accepts ${pattern}`, () => {
      assert.isTrue(EventPattern.isValid(pattern))
      assert.isUndefined(EventPattern.validate(pattern))
    })
  }
  for (const pattern of ["", ".", "a.", ".a", "a..b", "a.b*", "a:b", "a b", "content.**", "é"]) {
    it(`rejects ${JSON.stringify(pattern)}`, () => {
      assert.isFalse(EventPattern.isValid(pattern))
      assert.isString(EventPattern.validate(pattern))
    })
  }

  it("names the empty segment", () => {
    assert.include(EventPattern.validate("a..b") ?? "", "empty segment")
  })

  it.prop("accepts every generated pattern", { pattern: patternArb }, ({ pattern }) => {
    assert.isTrue(EventPattern.isValid(pattern))
  })
})

describe("EventPattern schemas", () => {
  const decodeType = Schema.decodeUnknownEither(EventPattern.EventType)
  const decodePattern = Schema.decodeUnknownEither(EventPattern.EventPatternString)

  it("EventType accepts concrete types", () => {
    assert.isTrue(Either.isRight(decodeType("content.created")))
  })

  it("EventType rejects patterns with a clear message", () => {
    const result = decodeType("content.*")
    assert.isTrue(Either.isLeft(result))
    if (Either.isLeft(result)) assert.include(result.left.message, "must be concrete")
  })

  it("EventType rejects empty segments", () => {
    const result = decodeType("content..created")
    assert.isTrue(Either.isLeft(result))
    if (Either.isLeft(result)) assert.include(result.left.message, "event type")
  })

  it("EventPatternString accepts patterns and explains rejections", () => {
    assert.isTrue(Either.isRight(decodePattern("content.*")))
    const result = decodePattern("content.")
    assert.isTrue(Either.isLeft(result))
    if (Either.isLeft(result)) assert.include(result.left.message, "empty segment")
  })
})
