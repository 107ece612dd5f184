/**
 * The `resources` block of `plugin.json`: human-readable sizes (`"100MB"`) and rates
 * (`"1000/min"`), their parsers, and the parsed limits the Sandbox enforces.
 *
 * Sizes use binary multiples throughout: `KB` = `KiB` = 1024 bytes, `MB` = `MiB` = 1024²,
 * and so on. That is what V8 (`--max-old-space-size`) and Docker (`-m 512m`) mean, so a
 * plugin author's `"512MB"` lands on the heap flag without surprise rounding.
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"

const BYTE_UNITS: Readonly<Record<string, number>> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1024 ** 4,
  tib: 1024 ** 4
}

const BYTES_PATTERN = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i

const bytesError = (input: string, why: string): string =>
  `invalid byte size ${JSON.stringify(input)}: ${why}; expected a positive number with an optional unit ` +
  `B, KB, MB, GB, TB (or KiB, MiB, GiB, TiB; all multiples of 1024, case-insensitive), e.g. "100MB" or "1.5GB"`

/**
 * Parses a size like `"100MB"`, `"1.5GB"`, `"64MiB"` or `"1024"` (bare number = bytes) into
 * a whole number of bytes (fractions round down); the `Left` is a message naming the input.
 */
export const parseBytes = (input: string): Either.Either<number, string> => {
  const text = input.trim()
  const match = BYTES_PATTERN.exec(text)
  if (match === null) {
    const why = text === "" ? "empty" : text.startsWith("-") ? "must be positive" : "not a number and unit"
    return Either.left(bytesError(input, why))
  }
  const [, amount = "", unit = ""] = match
  const multiplier = BYTE_UNITS[unit.toLowerCase()]
  if (multiplier === undefined) {
    return Either.left(bytesError(input, `unknown unit ${JSON.stringify(unit)}`))
  }
  const bytes = Math.floor(Number(amount) * multiplier)
  if (!Number.isFinite(bytes) || bytes <= 0) {
    return Either.left(bytesError(input, "must be at least 1 byte"))
  }
  // Above 2^53 the byte count is no longer exact; no real limit is that large.
  if (!Number.isSafeInteger(bytes)) {
    return Either.left(bytesError(input, "too large"))
  }
  return Either.right(bytes)
}

/** A parsed `resources.rateLimit`: at most `limit` calls per `windowMillis`. */
export interface RateLimit {
  /** Calls allowed per window (a positive integer). */
  readonly limit: number
  /** The window length in milliseconds. */
  readonly windowMillis: number
  /** The manifest's original text (trimmed), for error messages such as `RateLimited.limit`. */
  readonly text: string
}

const SECOND = 1000
const MINUTE = 60 * SECOND
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR

const RATE_WINDOWS: Readonly<Record<string, number>> = {
  s: SECOND,
  sec: SECOND,
  secs: SECOND,
  second: SECOND,
  seconds: SECOND,
  m: MINUTE,
  min: MINUTE,
  mins: MINUTE,
  minute: MINUTE,
  minutes: MINUTE,
  h: HOUR,
  hr: HOUR,
  hrs: HOUR,
  hour: HOUR,
  hours: HOUR,
  d: DAY,
  day: DAY,
  days: DAY
}

const RATE_PATTERN = /^(\S+?)\s*\/\s*([a-z]+)$/i

const rateError = (input: string, why: string): string =>
  `invalid rate limit ${JSON.stringify(input)}: ${why}; expected "<count>/<window>" with a positive integer ` +
  `count and a window of s|sec|second, m|min|minute, h|hr|hour or d|day, e.g. "1000/min"`

/** Parses a rate like `"1000/min"`, `"10/s"` or `"5000/hour"`; the `Left` is a message naming the input. */
export const parseRate = (input: string): Either.Either<RateLimit, string> => {
  const text = input.trim()
  const match = RATE_PATTERN.exec(text)
  if (match === null) {
    return Either.left(rateError(input, "not of the form count/window"))
  }
  const [, count = "", unit = ""] = match
  const windowMillis = RATE_WINDOWS[unit.toLowerCase()]
  if (windowMillis === undefined) {
    return Either.left(rateError(input, `unknown window ${JSON.stringify(unit)}`))
  }
  // Digits only: rejects "1.5", "-3", "1e3" and "0x10" that Number() would accept.
  const limit = /^\d+$/.test(count) ? Number(count) : Number.NaN
  if (!Number.isSafeInteger(limit) || limit <= 0) {
    return Either.left(rateError(input, `count ${JSON.stringify(count)} is not a positive integer`))
  }
  return Either.right({ limit, windowMillis, text })
}

/** A manifest size string such as `"100MB"`; kept as text so the manifest re-encodes unchanged. */
export const ByteSize = Schema.String.pipe(
  Schema.filter(
    (input) => Either.match(parseBytes(input), { onLeft: (message) => message, onRight: () => true }),
    {
      identifier: "ByteSize",
      description: 'a byte size such as "100MB", "512KiB" or "1024" (binary multiples)'
    }
  )
)

/** A manifest rate string such as `"1000/min"`; kept as text so the manifest re-encodes unchanged. */
export const RateLimitString = Schema.String.pipe(
  Schema.filter(
    (input) => Either.match(parseRate(input), { onLeft: (message) => message, onRight: () => true }),
    {
      identifier: "RateLimitString",
      description: 'a rate such as "1000/min", "10/s" or "5000/hour"'
    }
  )
)

/** The limits the Sandbox enforces for one plugin; `undefined` means the node's default applies. */
export interface ResourceLimits {
  /** From `maxMemory`: V8 heap flag plus RSS sampling of the plugin's subprocess. */
  readonly maxMemoryBytes: number | undefined
  /** From `maxGoroutines`: in-flight calls allowed per direction. */
  readonly maxConcurrency: number | undefined
  /** From `rateLimit`: applied to plugin→host calls. */
  readonly rateLimit: RateLimit | undefined
  /** From `maxSockets`: open socket descriptors of the plugin's process. */
  readonly maxSockets: number | undefined
}
