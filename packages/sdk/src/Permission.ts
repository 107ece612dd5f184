/**
 * Permissions: `resource:action[:scope]` strings that a manifest requests and the node
 * grants. Deny by default: anything that does not parse covers nothing and is sensitive.
 *
 * Coverage is segment by segment (a grant segment equals the required one or is `*`), and a
 * shorter grant covers everything beneath it. There are no string-prefix tests: the original
 * pseudocode let an action `*` match every resource and `storage:read` match `storage:write`.
 */
import { posix } from "node:path"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as EventPattern from "./EventPattern.js"

// Quoted with escapes, so a hostile string cannot forge lines in a log or error message.
const q = (s: string): string => JSON.stringify(s)

/** A parsed permission; `scope` is `undefined` for the two-segment form. */
export interface Permission {
  readonly resource: string
  readonly action: string
  readonly scope: string | undefined
}

/** The mesh names reserved for the node's own services. */
export const CoreServiceNames = ["identity", "storage", "events", "p2p", "node"] as const

/** One of {@link CoreServiceNames}. */
export type CoreServiceName = (typeof CoreServiceNames)[number]

/** True for a name reserved by a core service, whose write and admin methods are sensitive. */
export const isCoreService = (name: string): name is CoreServiceName =>
  (CoreServiceNames as ReadonlyArray<string>).includes(name)

/** The access class every mesh contract method declares. */
export type Access = "read" | "write" | "admin"

/** Looks up a core service method's access class, so `service:storage:get` can count as a read. */
export type CoreMethodAccess = (service: string, method: string) => Access | undefined

const NAME = /^(?:\*|[a-z][a-z0-9-]*)$/
// Rpc tags are often PascalCase or dotted, so method names are looser than service names.
const METHOD = /^(?:\*|[A-Za-z_][A-Za-z0-9_.-]*)$/
// Host or [IPv6], with an optional port; wildcards only as the whole scope.
const HOST = /^(?:\*|(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?)$/
// biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]/
const GENERIC = /^[^\s:]+$/

const validateScope = (resource: string, scope: string): string | undefined => {
  if (scope === "") return `the scope after the second ":" is empty (drop the trailing ":")`
  if (CONTROL.test(scope)) return "the scope contains a control character"
  switch (resource) {
    case "fs":
      return scope === "*" || scope.startsWith("/")
        ? undefined
        : `the fs scope ${q(scope)} must be an absolute path (starting with "/") or "*"`
    case "network": {
      const host = HOST.exec(scope)
      const port = host?.[1]
      if (host !== null && (port === undefined || (Number(port) >= 1 && Number(port) <= 65535))) {
        return undefined
      }
      return `the network scope ${q(scope)} must be host, host:port (port 1-65535), [ipv6]:port or "*"`
    }
    case "events":
    case "hooks": {
      const reason = EventPattern.validate(scope)
      return reason === undefined ? undefined : `the ${resource} scope is not a valid pattern: ${reason}`
    }
    case "service":
      return METHOD.test(scope)
        ? undefined
        : `the method or access class ${q(scope)} must be "*" or letters, digits, "_", "." and "-"`
    default:
      return GENERIC.test(scope)
        ? undefined
        : `the scope ${q(scope)} must not contain ":" or whitespace (at most 3 segments)`
  }
}

/**
 * Parses `resource:action[:scope]`; the Left is a reason naming the input. For `fs` and
 * `network` everything after the action is the scope (paths and host:port contain `:`).
 */
export const parse = (input: string): Either.Either<Permission, string> => {
  const fail = (why: string) => Either.left(`invalid permission ${q(input)}: ${why}`)
  const first = input.indexOf(":")
  if (first < 0) return fail(`expected resource:action[:scope], e.g. "storage:read"`)
  const resource = input.slice(0, first)
  if (!NAME.test(resource)) {
    return fail(
      `the resource ${q(resource)} must be "*" or lowercase letters, digits and "-", starting with a letter`
    )
  }
  const second = input.indexOf(":", first + 1)
  const action = second < 0 ? input.slice(first + 1) : input.slice(first + 1, second)
  if (!NAME.test(action)) {
    const what = resource === "service" ? "service name" : "action"
    return fail(
      `the ${what} ${q(action)} must be "*" or lowercase letters, digits and "-", starting with a letter`
    )
  }
  if (second < 0) return Either.right({ resource, action, scope: undefined })
  const scope = input.slice(second + 1)
  const reason = validateScope(resource, scope)
  return reason === undefined ? Either.right({ resource, action, scope }) : fail(reason)
}

/** The canonical string form; `parse(format(p))` gives `p` back. */
export const format = (p: Permission): string =>
  p.scope === undefined ? `${p.resource}:${p.action}` : `${p.resource}:${p.action}:${p.scope}`

/** A permission string, checked by {@link parse} (the failure message is its reason). */
export const PermissionString = Schema.String.pipe(
  Schema.filter((s) => Either.match(parse(s), { onLeft: (reason) => reason, onRight: () => true })),
  Schema.annotations({
    identifier: "Permission",
    description: "A permission resource:action[:scope], e.g. storage:read or events:subscribe:content.*"
  })
)

const toPermission = (p: string | Permission): Permission | undefined =>
  typeof p === "string" ? Either.getOrUndefined(parse(p)) : p

// Paths are compared by components after normalisation, so `/srv/a` holds `/srv/a/b` and
// `/srv/a/../b` is `/srv/b`; `/srv/ab` is a sibling, not a child.
const pathComponents = (path: string): ReadonlyArray<string> =>
  posix
    .normalize(path)
    .split("/")
    .filter((c) => c !== "")

const pathCovers = (granted: string, required: string): boolean => {
  if (granted === "*") return true
  if (!granted.startsWith("/") || !required.startsWith("/")) return false
  const g = pathComponents(granted)
  const r = pathComponents(required)
  return g.length <= r.length && g.every((c, i) => c === r[i])
}

const scopeCovers = (resource: string, granted: string, required: string): boolean => {
  if (granted === "*" || granted === required) return true
  switch (resource) {
    case "fs":
      return pathCovers(granted, required)
    case "events":
    case "hooks":
      return EventPattern.covers(granted, required)
    default:
      // Includes a required resource of `*`: only `*` or the same scope is safe for every rule.
      return false
  }
}

/**
 * True when `grant` covers `required`: each grant segment equals the required one or is `*`,
 * and a shorter grant covers everything beneath it. Unparsable input covers nothing.
 */
export const covers = (grant: string | Permission, required: string | Permission): boolean => {
  const g = toPermission(grant)
  const r = toPermission(required)
  if (g === undefined || r === undefined) return false
  if (g.resource !== "*" && g.resource !== r.resource) return false
  if (g.action !== "*" && g.action !== r.action) return false
  if (g.scope === undefined) return true
  // A more specific grant never covers a less specific requirement.
  if (r.scope === undefined) return false
  return scopeCovers(r.resource, g.scope, r.scope)
}

/** True when some permission in `granted` covers `required`. */
export const allows = (granted: ReadonlyArray<string>, required: string): boolean => {
  const r = toPermission(required)
  if (r === undefined) return false
  return granted.some((g) => covers(g, r))
}

/**
 * True when `p` needs the operator's grant: `fs`, `network`, `http`, `p2p`, non-read access to
 * a core service (or to a wildcard service name, which includes them) and unknown resources.
 */
export const isSensitive = (p: string | Permission, coreMethodAccess?: CoreMethodAccess): boolean => {
  const perm = toPermission(p)
  if (perm === undefined) return true
  switch (perm.resource) {
    case "storage":
    case "events":
    case "hooks":
      return false
    case "service": {
      const { action: name, scope } = perm
      if (name !== "*" && !isCoreService(name)) return false
      if (scope === undefined || scope === "*" || scope === "write" || scope === "admin") return true
      // A scope grants both the method of that name and the access class of that name, so a
      // core method literally called `read` with write access must not ride on `read`.
      const services: ReadonlyArray<string> = name === "*" ? CoreServiceNames : [name]
      const accesses = services.map((service) => coreMethodAccess?.(service, scope))
      if (accesses.some((access) => access !== undefined && access !== "read")) return true
      if (scope === "read") return false
      // Which service a `service:*:m` method belongs to is unknown, so only `read` is plain there.
      return name === "*" || accesses[0] !== "read"
    }
    default:
      // fs, network, http, p2p, `*` and anything unknown: deny by default.
      return true
  }
}

/** What a plugin gets: its granted requests, and each sensitive request the operator has not granted. */
export interface Resolution {
  readonly granted: ReadonlyArray<string>
  readonly missing: ReadonlyArray<string>
}

/**
 * Decides a plugin's effective permissions: plain requests are granted as asked, sensitive
 * ones only when an operator grant covers them. Never grants more than was requested.
 */
export const resolve = (
  requested: ReadonlyArray<string>,
  operatorGrants: ReadonlyArray<string>,
  coreMethodAccess?: CoreMethodAccess
): Resolution => {
  const granted: Array<string> = []
  const missing: Array<string> = []
  for (const request of new Set(requested)) {
    if (!isSensitive(request, coreMethodAccess) || allows(operatorGrants, request)) granted.push(request)
    else missing.push(request)
  }
  return { granted, missing }
}
