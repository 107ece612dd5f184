/**
 * Dotted event-type patterns (`content.created`, `content.*`, `a.*.c`, `*`), shared by the
 * event bus (which subscriber gets an event) and the permission check (which subscribe a
 * grant allows).
 *
 * A `*` segment matches exactly one dotted segment, except in last position, where it
 * matches one or more; a bare `*` therefore matches every type.
 */
import * as Schema from "effect/Schema"

// Quoted with escapes, so a hostile string cannot forge lines in a log or error message.
const q = (s: string): string => JSON.stringify(s)

const SEGMENT = /^[A-Za-z0-9_-]+$/

/** Why `pattern` is not a valid event pattern, or `undefined` when it is. */
export const validate = (pattern: string): string | undefined => {
  if (pattern === "") return "event pattern is empty"
  const segments = pattern.split(".")
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!
    if (segment === "") return `event pattern ${q(pattern)} has an empty segment at position ${i + 1}`
    if (segment !== "*" && !SEGMENT.test(segment)) {
      return `event pattern ${q(pattern)} has an invalid segment ${q(segment)}: use letters, digits, "_", "-", or a whole "*"`
    }
  }
  return undefined
}

/** True when `pattern` is made of non-empty `[A-Za-z0-9_-]` or `*` segments. */
export const isValid = (pattern: string): boolean => validate(pattern) === undefined

/**
 * True when the event type `type` is matched by `pattern`. Hot path of the event bus: the
 * pattern is assumed valid (validate it where it enters the node).
 */
export const matches = (pattern: string, type: string): boolean => {
  if (pattern === "*") return true
  const p = pattern.split(".")
  const t = type.split(".")
  const last = p.length - 1
  // A trailing `*` absorbs the rest, which must be at least one segment.
  if (p[last] === "*" ? t.length < p.length : t.length !== p.length) return false
  for (let i = 0; i < last; i++) {
    if (p[i] !== "*" && p[i] !== t[i]) return false
  }
  return p[last] === "*" || p[last] === t[last]
}

/**
 * True when every type matched by `requested` is also matched by `granted`: whether a grant
 * for `granted` allows subscribing to `requested`. Exact, and false when either is invalid.
 */
export const covers = (granted: string, requested: string): boolean => {
  if (!isValid(granted) || !isValid(requested)) return false
  const g = granted.split(".")
  const r = requested.split(".")
  const gOpen = g[g.length - 1] === "*"
  const rOpen = r[r.length - 1] === "*"
  // A fixed-length grant cannot hold an open-ended request (it matches arbitrarily long types);
  // an open grant needs the request to be at least as long; a fixed one exactly as long.
  if (rOpen && !gOpen) return false
  if (gOpen ? r.length < g.length : r.length !== g.length) return false
  // The grant's trailing `*` takes whatever follows; below it, a literal grant segment only
  // covers the same literal (a requested `*` also matches other segments).
  const compared = gOpen ? g.length - 1 : g.length
  for (let i = 0; i < compared; i++) {
    if (g[i] !== "*" && g[i] !== r[i]) return false
  }
  return true
}

/** A concrete event type as published, e.g. `content.created`: dotted segments, no `*`. */
export const EventType = Schema.String.pipe(
  Schema.filter((type) => {
    if (type.split(".").includes("*"))
      return `event type ${q(type)} must be concrete: "*" is only for patterns`
    return validate(type)?.replace("event pattern", "event type") ?? true
  }),
  Schema.annotations({
    identifier: "EventType",
    description: "A dotted event type such as content.created"
  })
)

/** A dotted event pattern for subscriptions and grants, e.g. `content.*` or `*`. */
export const EventPatternString = Schema.String.pipe(
  Schema.filter((pattern) => validate(pattern) ?? true),
  Schema.annotations({
    identifier: "EventPattern",
    description: "A dotted event pattern: '*' matches one segment, a trailing '*' one or more"
  })
)
