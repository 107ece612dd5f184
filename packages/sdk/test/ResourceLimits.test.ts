import { assert, describe, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { ByteSize, parseBytes, parseRate, RateLimitString } from "../src/ResourceLimits.js"

const KiB = 1024
const MiB = 1024 * KiB
const GiB = 1024 * MiB

const leftMessage = <A>(result: Either.Either<A, string>): string =>
  Either.match(result, {
    onLeft: (message) => message,
    onRight: (value) => assert.fail(`expected a failure, got ${JSON.stringify(value)}`)
  })

describe("parseBytes", () => {
  const valid: ReadonlyArray<readonly [string, number]> = [
    ["1024", 1024],
    ["1024B", 1024],
    ["1b", 1],
    ["512KB", 512 * KiB],
    ["512KiB", 512 * KiB],
    ["512k", 512 * KiB],
    ["100MB", 100 * MiB],
    ["100mb", 100 * MiB],
    ["64MiB", 64 * MiB],
    ["64mib", 64 * MiB],
    ["512m", 512 * MiB],
    ["1GB", GiB],
    ["1GiB", GiB],
    ["1.5GB", 1.5 * GiB],
    ["2TB", 2 * 1024 * GiB],
    ["  100 MB ", 100 * MiB]
  ]
  for (const [input, expected] of valid) {
    it(`parses ${JSON.stringify(input)}`, () => {
      assert.deepStrictEqual(parseBytes(input), Either.right(expected))
    })
  }

  it("rounds fractional bytes down", () => {
    assert.deepStrictEqual(parseBytes("1.1KB"), Either.right(1126))
  })

  const invalid: ReadonlyArray<readonly [string, string]> = [
    ["", "empty"],
    ["-5MB", "must be positive"],
    ["0", "at least 1 byte"],
    ["0MB", "at least 1 byte"],
    ["NaN", "not a number and unit"],
    ["MB", "not a number and unit"],
    ["100XB", 'unknown unit "XB"'],
    ["100 megabytes", 'unknown unit "megabytes"'],
    ["1e3", "not a number and unit"],
    ["99999999999TB", "too large"]
  ]
  for (const [input, why] of invalid) {
    it(`rejects ${JSON.stringify(input)}`, () => {
      const message = leftMessage(parseBytes(input))
      assert.include(message, `invalid byte size ${JSON.stringify(input)}`)
      assert.include(message, why)
      assert.include(message, "KB, MB, GB")
      assert.include(message, "1024")
    })
  }
})

describe("parseRate", () => {
  const valid: ReadonlyArray<readonly [string, number, number]> = [
    ["1000/min", 1000, 60_000],
    ["10/s", 10, 1000],
    ["10/sec", 10, 1000],
    ["10/second", 10, 1000],
    ["10/seconds", 10, 1000],
    ["100/m", 100, 60_000],
    ["100/minute", 100, 60_000],
    ["100/MIN", 100, 60_000],
    ["5000/h", 5000, 3_600_000],
    ["5000/hour", 5000, 3_600_000],
    ["100/day", 100, 86_400_000],
    ["100/d", 100, 86_400_000],
    [" 1000 / min ", 1000, 60_000]
  ]
  for (const [input, limit, windowMillis] of valid) {
    it(`parses ${JSON.stringify(input)}`, () => {
      assert.deepStrictEqual(parseRate(input), Either.right({ limit, windowMillis, text: input.trim() }))
    })
  }

  const invalid: ReadonlyArray<readonly [string, string]> = [
    ["", "not of the form count/window"],
    ["1000", "not of the form count/window"],
    ["/min", "not of the form count/window"],
    ["0/min", 'count "0" is not a positive integer'],
    ["-5/min", 'count "-5" is not a positive integer'],
    ["1.5/s", 'count "1.5" is not a positive integer'],
    ["1e3/s", 'count "1e3" is not a positive integer'],
    ["abc/s", 'count "abc" is not a positive integer'],
    ["10/week", 'unknown window "week"'],
    ["10/ms", 'unknown window "ms"']
  ]
  for (const [input, why] of invalid) {
    it(`rejects ${JSON.stringify(input)}`, () => {
      const message = leftMessage(parseRate(input))
      assert.include(message, `invalid rate limit ${JSON.stringify(input)}`)
      assert.include(message, why)
      assert.include(message, '"1000/min"')
    })
  }
})

describe("schemas", () => {
  it("ByteSize keeps the text and fails with parseBytes' message", () => {
    assert.deepStrictEqual(Schema.decodeUnknownEither(ByteSize)("100MB"), Either.right("100MB"))
    const result = Schema.decodeUnknownEither(ByteSize)("100XB")
    assert.isTrue(Either.isLeft(result))
    if (Either.isLeft(result)) assert.include(result.left.message, 'unknown unit "XB"')
  })

  it("RateLimitString keeps the text and fails with parseRate's message", () => {
    assert.deepStrictEqual(Schema.decodeUnknownEither(RateLimitString)("1000/min"), Either.right("1000/min"))
    const result = Schema.decodeUnknownEither(RateLimitString)("10/week")
    assert.isTrue(Either.isLeft(result))
    if (Either.isLeft(result)) assert.include(result.left.message, 'unknown window "week"')
  })
})
