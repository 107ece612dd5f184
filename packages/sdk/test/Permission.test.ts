import { assert, describe, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as FastCheck from "effect/FastCheck"
import * as Schema from "effect/Schema"
import * as EventPattern from "../src/EventPattern.js"
import * as Permission from "../src/Permission.js"

const name = FastCheck.constantFrom("storage", "events", "hooks", "service", "http", "p2p", "custom-thing")
const action = FastCheck.constantFrom("read", "write", "publish", "subscribe", "serve", "identity", "node")
const component = FastCheck.constantFrom("a", "ab", "b", "srv", "x:y", "..", ".")
const absolutePath = FastCheck.array(component, { maxLength: 5 }).map((cs) => `/${cs.join("/")}`)
const eventPattern = FastCheck.array(FastCheck.constantFrom("a", "b", "*"), {
  minLength: 1,
  maxLength: 3
}).map((ss) => ss.join("."))

// A valid scope for the given resource, following the per-resource grammar.
const scopeFor = (resource: string): FastCheck.Arbitrary<string> => {
  switch (resource) {
    case "fs":
      return FastCheck.oneof(absolutePath, FastCheck.constant("*"))
    case "network":
      return FastCheck.constantFrom("example.com", "example.com:443", "10.0.0.1:8080", "[::1]:22", "*")
    case "events":
    case "hooks":
      return eventPattern
    case "service":
      return FastCheck.constantFrom("read", "write", "admin", "sign", "getBalance", "*")
    default:
      return FastCheck.constantFrom("sync", "main", "v1.2", "*")
  }
}

const permissionArb: FastCheck.Arbitrary<Permission.Permission> = FastCheck.oneof(
  name,
  FastCheck.constantFrom("fs", "network")
).chain((resource) =>
  FastCheck.record({
    resource: FastCheck.constant(resource),
    action,
    scope: FastCheck.option(scopeFor(resource), { nil: undefined })
  })
)
const permissionString = permissionArb.map(Permission.format)

describe("Permission.parse", () => {
  const valid: ReadonlyArray<readonly [string, Permission.Permission]> = [
    ["storage:read", { resource: "storage", action: "read", scope: undefined }],
    ["events:publish", { resource: "events", action: "publish", scope: undefined }],
    ["events:subscribe:content.*", { resource: "events", action: "subscribe", scope: "content.*" }],
    ["service:identity:read", { resource: "service", action: "identity", scope: "read" }],
    ["service:identity", { resource: "service", action: "identity", scope: undefined }],
    ["service:my-plugin:getBalance", { resource: "service", action: "my-plugin", scope: "getBalance" }],
    [
      "hooks:register:storage.before.write",
      { resource: "hooks", action: "register", scope: "storage.before.write" }
    ],
    ["http:serve", { resource: "http", action: "serve", scope: undefined }],
    ["p2p:protocol:sync", { resource: "p2p", action: "protocol", scope: "sync" }],
    ["network:connect:example.com", { resource: "network", action: "connect", scope: "example.com" }],
    ["network:connect:example.com:443", { resource: "network", action: "connect", scope: "example.com:443" }],
    ["network:connect:[::1]:8080", { resource: "network", action: "connect", scope: "[::1]:8080" }],
    ["network:connect:*", { resource: "network", action: "connect", scope: "*" }],
    ["fs:write:/srv/data", { resource: "fs", action: "write", scope: "/srv/data" }],
    ["fs:read:/srv/a:b/c", { resource: "fs", action: "read", scope: "/srv/a:b/c" }],
    ["fs:read:/my files", { resource: "fs", action: "read", scope: "/my files" }],
    ["fs:read:*", { resource: "fs", action: "read", scope: "*" }],
    ["storage:*", { resource: "storage", action: "*", scope: undefined }],
    ["*:*", { resource: "*", action: "*", scope: undefined }]
  ]
  for (const [input, expected] of valid) {
    it(`parses ${input}`, () => {
      const result = Permission.parse(input)
      assert.deepStrictEqual(result, Either.right(expected))
      assert.strictEqual(Permission.format(expected), input)
    })
  }

  const invalid: ReadonlyArray<readonly [string, string]> = [
    ["", "expected resource:action"],
    ["storage", "expected resource:action"],
    ["Storage:read", "resource"],
    [":read", "resource"],
    ["storage:", "action"],
    ["storage:Read", "action"],
    ["storage:re*d", "action"],
    ["service:Identity", "service name"],
    ["storage:read:", "empty"],
    ["storage:read:a:b", "at most 3 segments"],
    ["p2p:protocol:a b", "whitespace"],
    ["fs:read:srv/a", "absolute path"],
    ["fs:read:", "empty"],
    ["fs:read:/a\u0000b", "control character"],
    ["network:connect:exa mple.com", "network scope"],
    ["network:connect:example.com:99999", "network scope"],
    ["network:connect:example.com:*", "network scope"],
    ["network:connect:::1", "network scope"],
    ["events:subscribe:content.", "empty segment"],
    ["events:subscribe:a:b", "not a valid pattern"],
    ["hooks:register:storage..write", "empty segment"],
    ["service:identity:sign:extra", "method or access class"]
  ]
  for (const [input, reason] of invalid) {
    it(`rejects ${JSON.stringify(input)}`, () => {
      const result = Permission.parse(input)
      assert.isTrue(Either.isLeft(result))
      if (Either.isLeft(result)) {
        assert.include(result.left, reason)
        assert.include(result.left, JSON.stringify(input))
      }
    })
  }

  it.prop("format and parse round-trip", { p: permissionArb }, ({ p }) => {
    assert.deepStrictEqual(Permission.parse(Permission.format(p)), Either.right(p))
  })
})

describe("Permission.PermissionString", () => {
  const decode = Schema.decodeUnknownEither(Permission.PermissionString)

  it("accepts the original example manifest's permissions", () => {
    for (const p of ["storage:read", "storage:write", "events:publish", "service:identity:read"]) {
      assert.isTrue(Either.isRight(decode(p)), p)
    }
  })

  it("reports the parse reason", () => {
    const result = decode("fs:read:relative")
    assert.isTrue(Either.isLeft(result))
    if (Either.isLeft(result)) assert.include(result.left.message, "absolute path")
  })
})

describe("Permission.covers", () => {
  const table: ReadonlyArray<readonly [string, string, boolean]> = [
    // DESIGN examples.
    ["events:publish", "events:publish:content.created", true],
    ["service:identity", "service:identity:sign", true],
    ["events:subscribe:content.*", "events:subscribe:content.created", true],
    ["events:subscribe:content.*", "events:subscribe:content.a.*", true],
    ["events:subscribe:content.created", "events:subscribe:content.*", false],
    ["events:subscribe:*", "events:subscribe:a.*.c", true],
    ["events:subscribe:a.*", "events:subscribe:*", false],
    ["hooks:register:storage.*", "hooks:register:storage.before.write", true],
    ["hooks:register:storage.before.write", "hooks:register:storage.after.write", false],
    ["fs:write:/srv/a", "fs:write:/srv/a/b", true],
    ["fs:write:/srv/a", "fs:write:/srv/a", true],
    ["fs:write:/srv/a", "fs:write:/srv/ab", false],
    ["fs:write:/srv/a/", "fs:write:/srv/a/b", true],
    ["fs:write:/srv//a", "fs:write:/srv/a/./b", true],
    ["fs:write:/srv/a", "fs:write:/srv/a/../b", false],
    ["fs:write:/srv/a/../b", "fs:write:/srv/b/c", true],
    ["fs:write:/", "fs:write:/anything/at/all", true],
    ["fs:write:*", "fs:write:/anything", true],
    ["fs:write:/srv", "fs:write:*", false],
    ["fs:write:/a:b", "fs:write:/a:b/c", true],
    ["fs:write:/a", "fs:write:/a:b", false],
    ["fs:read:/srv", "fs:write:/srv", false],
    ["fs:*", "fs:write:/srv/a", true],
    ["service:*", "service:identity:sign", true],
    ["service:*:read", "service:identity:read", true],
    ["service:identity:read", "service:identity:sign", false],
    ["service:identity:sign", "service:identity", false],
    ["network:connect:example.com", "network:connect:example.com", true],
    ["network:connect:example.com", "network:connect:example.com:443", false],
    ["network:connect:*", "network:connect:example.com:443", true],
    ["storage:read", "storage:read", true],
    ["storage:*", "storage:write", true],
    ["*:*", "fs:write:/etc", true],
    ["*:read", "storage:read", true],
    ["*:read", "storage:write", false],
    ["*:subscribe:content.*", "events:subscribe:content.created", true],
    ["*:write:/srv", "fs:write:/srv/a", true],
    // A more specific grant never covers a less specific requirement.
    ["storage:read:x", "storage:read", false],
    ["events:subscribe:*", "events:subscribe", false],
    // The original pseudocode's bugs: action `*` matched every resource...
    ["storage:*", "fs:write:/etc", false],
    ["storage:*", "network:connect:example.com", false],
    ["events:*", "storage:read", false],
    // ...and `storage:read` matched `storage:write` through a string-prefix test.
    ["storage:read", "storage:write", false],
    ["storage:read", "storage:readall", false],
    ["service:identity", "service:identity-extra:sign", false],
    ["events:publish", "events:publisher", false],
    // Unparsable input covers nothing.
    ["storage", "storage:read", false],
    ["storage:read", "storage", false],
    ["fs:read:relative", "fs:read:relative", false]
  ]
  for (const [grant, required, expected] of table) {
    it(`${grant} ${expected ? "covers" : "does not cover"} ${required}`, () => {
      assert.strictEqual(Permission.covers(grant, required), expected)
    })
  }

  it("accepts parsed permissions", () => {
    const grant: Permission.Permission = { resource: "storage", action: "*", scope: undefined }
    assert.isTrue(Permission.covers(grant, { resource: "storage", action: "read", scope: "x" }))
    assert.isFalse(Permission.covers(grant, { resource: "events", action: "read", scope: undefined }))
  })

  it.prop("every valid permission covers itself", { p: permissionString }, ({ p }) => {
    assert.isTrue(Permission.covers(p, p))
  })

  it.prop(
    "a shorter grant covers every extension beneath it",
    { p: permissionArb.filter((p) => p.scope !== undefined) },
    ({ p }) => {
      assert.isTrue(Permission.covers(`${p.resource}:${p.action}`, p))
      assert.isFalse(Permission.covers(p, `${p.resource}:${p.action}`))
    }
  )

  it.prop("a wildcard segment covers whatever the segment holds", { p: permissionArb }, ({ p }) => {
    assert.isTrue(Permission.covers({ ...p, action: "*" }, p))
    assert.isTrue(Permission.covers({ ...p, resource: "*" }, p))
    if (p.scope !== undefined) assert.isTrue(Permission.covers({ ...p, scope: "*" }, p))
  })

  it.prop(
    "never crosses resources unless the grant's resource is *",
    { grant: permissionArb, required: permissionArb },
    ({ grant, required }) => {
      if (grant.resource !== required.resource) assert.isFalse(Permission.covers(grant, required))
      if (grant.resource !== required.resource) {
        assert.isFalse(Permission.covers({ ...grant, action: "*", scope: undefined }, required))
      }
    }
  )

  it.prop(
    "never crosses actions unless the grant's action is *",
    { grant: permissionArb, required: permissionArb },
    ({ grant, required }) => {
      if (grant.action !== "*" && grant.action !== required.action) {
        assert.isFalse(Permission.covers(grant, required))
      }
    }
  )

  it.prop(
    "event scopes follow EventPattern.covers",
    { action, granted: eventPattern, requested: eventPattern },
    ({ action, granted, requested }) => {
      assert.strictEqual(
        Permission.covers(`events:${action}:${granted}`, `events:${action}:${requested}`),
        EventPattern.covers(granted, requested)
      )
    }
  )

  it.prop(
    "fs scopes compare whole path components, unlike a string prefix",
    { granted: absolutePath, required: absolutePath },
    ({ granted, required }) => {
      const g = granted.split("/").filter((c) => c !== "" && c !== ".")
      const r = required.split("/").filter((c) => c !== "" && c !== ".")
      const resolved = (cs: ReadonlyArray<string>) => {
        const out: Array<string> = []
        for (const c of cs) {
          if (c === "..") out.pop()
          else out.push(c)
        }
        return out
      }
      const gr = resolved(g)
      const rr = resolved(r)
      const byComponents = gr.length <= rr.length && gr.every((c, i) => c === rr[i])
      assert.strictEqual(Permission.covers(`fs:write:${granted}`, `fs:write:${required}`), byComponents)
      // Where the naive prefix test says yes but the next character is not a separator, it is wrong.
      const gs = `/${gr.join("/")}`
      const rs = `/${rr.join("/")}`
      if (gs !== "/" && rs.startsWith(gs) && rs.length > gs.length && rs[gs.length] !== "/") {
        assert.isFalse(Permission.covers(`fs:write:${gs}`, `fs:write:${rs}`))
      }
    },
    { fastCheck: { numRuns: 500 } }
  )

  it("the fs property exercises the prefix trap", () => {
    assert.isTrue("/srv/ab".startsWith("/srv/a"))
    assert.isFalse(Permission.covers("fs:write:/srv/a", "fs:write:/srv/ab"))
  })
})

describe("Permission.allows", () => {
  it("is true when any grant covers", () => {
    assert.isTrue(Permission.allows(["storage:read", "events:publish"], "events:publish:content.created"))
    assert.isFalse(Permission.allows(["storage:read", "events:publish"], "storage:write"))
    assert.isFalse(Permission.allows([], "storage:read"))
    assert.isFalse(Permission.allows(["*:*"], "not-a-permission"))
  })

  it.prop(
    "agrees with covers",
    { grants: FastCheck.array(permissionString), required: permissionString },
    ({ grants, required }) => {
      assert.strictEqual(
        Permission.allows(grants, required),
        grants.some((g) => Permission.covers(g, required))
      )
    }
  )
})

describe("Permission.isSensitive", () => {
  const coreMethodAccess = (service: string, method: string): Permission.Access | undefined => {
    if (service === "identity")
      return method === "sign" ? "write" : method === "publicKey" ? "read" : undefined
    if (service === "storage") return method === "get" ? "read" : method === "put" ? "write" : undefined
    return undefined
  }

  const table: ReadonlyArray<readonly [string, boolean]> = [
    ["storage:read", false],
    ["storage:write", false],
    ["events:publish", false],
    ["events:subscribe:content.*", false],
    ["hooks:register:storage.before.write", false],
    ["service:my-plugin", false],
    ["service:my-plugin:anything", false],
    ["service:identity:read", false],
    ["service:identity:publicKey", false],
    ["service:storage:get", false],
    ["service:*:read", false],
    ["service:identity", true],
    ["service:identity:write", true],
    ["service:identity:admin", true],
    ["service:identity:sign", true],
    ["service:identity:unknownMethod", true],
    ["service:identity:*", true],
    ["service:storage:write", true],
    ["service:storage:put", true],
    ["service:node:read", false],
    ["service:*", true],
    ["service:*:publicKey", true],
    ["service:*:write", true],
    ["fs:read:/srv", true],
    ["fs:*", true],
    ["network:connect:example.com", true],
    ["http:serve", true],
    ["http:*", true],
    ["p2p:protocol:sync", true],
    ["*:*", true],
    ["storage-ng:read", true],
    ["not a permission", true]
  ]
  for (const [p, expected] of table) {
    it(`${p} is ${expected ? "sensitive" : "plain"}`, () => {
      assert.strictEqual(Permission.isSensitive(p, coreMethodAccess), expected)
    })
  }

  it("without an access table only the read class of a core service is plain", () => {
    assert.isFalse(Permission.isSensitive("service:identity:read"))
    assert.isTrue(Permission.isSensitive("service:identity:publicKey"))
  })

  it("a core method named like an access class cannot ride on that class", () => {
    // `service:storage:read` would also allow calling a method named `read`.
    const odd = (_service: string, method: string): Permission.Access | undefined =>
      method === "read" ? "admin" : undefined
    assert.isTrue(Permission.isSensitive("service:storage:read", odd))
    assert.isTrue(Permission.isSensitive("service:*:read", odd))
  })
})

describe("Permission.resolve", () => {
  it("grants plain requests and names each missing sensitive one", () => {
    const result = Permission.resolve(
      [
        "storage:read",
        "storage:write",
        "events:publish",
        "service:identity:read",
        "fs:write:/srv/x",
        "http:serve"
      ],
      []
    )
    assert.deepStrictEqual(result.granted, [
      "storage:read",
      "storage:write",
      "events:publish",
      "service:identity:read"
    ])
    assert.deepStrictEqual(result.missing, ["fs:write:/srv/x", "http:serve"])
  })

  it("grants sensitive requests that an operator grant covers, and no more than requested", () => {
    const result = Permission.resolve(
      ["fs:write:/srv/data/backups", "service:storage:write", "network:connect:example.com:443"],
      ["fs:write:/srv/data", "service:storage", "network:connect:example.com", "http:serve"]
    )
    assert.deepStrictEqual(result.granted, ["fs:write:/srv/data/backups", "service:storage:write"])
    assert.deepStrictEqual(result.missing, ["network:connect:example.com:443"])
  })

  it("uses the core method access table", () => {
    const access = (_service: string, method: string): Permission.Access | undefined =>
      method === "get" ? "read" : "write"
    const result = Permission.resolve(["service:storage:get", "service:storage:put"], [], access)
    assert.deepStrictEqual(result.granted, ["service:storage:get"])
    assert.deepStrictEqual(result.missing, ["service:storage:put"])
  })

  it("treats an invalid request as missing", () => {
    assert.deepStrictEqual(Permission.resolve(["storage"], ["*:*"]), { granted: [], missing: ["storage"] })
  })

  it.prop(
    "partitions the requests: plain or covered are granted, the rest missing",
    {
      requested: FastCheck.array(permissionString, { maxLength: 8 }),
      grants: FastCheck.array(permissionString, { maxLength: 4 })
    },
    ({ requested, grants }) => {
      const { granted, missing } = Permission.resolve(requested, grants)
      assert.deepStrictEqual([...granted, ...missing].sort(), [...new Set(requested)].sort())
      for (const p of granted) assert.isTrue(!Permission.isSensitive(p) || Permission.allows(grants, p), p)
      for (const p of missing) {
        assert.isTrue(Permission.isSensitive(p), p)
        assert.isFalse(Permission.allows(grants, p), p)
      }
    }
  )
})

describe("Permission.CoreServiceNames", () => {
  it("lists the reserved names", () => {
    assert.deepStrictEqual([...Permission.CoreServiceNames], ["identity", "storage", "events", "p2p", "node"])
    assert.isTrue(Permission.isCoreService("identity"))
    assert.isFalse(Permission.isCoreService("my-plugin"))
  })
})
