/**
 * The files of a new plugin package (`blackhole plugin new`). Plain string
 * templates: the generated code is meant to be read and edited, so it is
 * written out here exactly as the author will see it.
 */

/** What the templates are filled with. */
export interface Names {
  /** The name given on the command line: also the service name and the event prefix, e.g. `hello-world`. */
  readonly name: string
  /** The plugin id, e.g. `dev.local.hello-world`. */
  readonly id: string
  /** For people, e.g. `Hello World`. */
  readonly title: string
  /** The contract's identifier, e.g. `HelloWorldService`. */
  readonly contract: string
  /** This node's version: the plugin's minimum compatible version. */
  readonly nodeVersion: string
  /** Absolute path of this checkout's `packages/sdk`. */
  readonly sdkPath: string
  /** Dependency name → version range, taken from what this checkout has installed. */
  readonly versions: Readonly<Record<string, string>>
}

/** Names from a command-line name such as `hello-world`. */
export const namesOf = (
  name: string,
  options: {
    readonly id?: string
    readonly nodeVersion: string
    readonly sdkPath: string
    readonly versions: Readonly<Record<string, string>>
  }
): Names => {
  const words = name.split("-").filter((word) => word !== "")
  const capitalised = words.map((word) => word.charAt(0).toUpperCase() + word.slice(1))
  return {
    name,
    id: options.id ?? `dev.local.${name}`,
    title: capitalised.join(" "),
    contract: `${capitalised.join("")}Service`,
    nodeVersion: options.nodeVersion,
    sdkPath: options.sdkPath,
    versions: options.versions
  }
}

const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`

/** A value as TypeScript source: unquoted keys, short objects and lists of scalars on one line. */
const literal = (value: unknown, indent: string): string => {
  if (Array.isArray(value)) return `[${value.map((item) => literal(item, indent)).join(", ")}]`
  if (typeof value !== "object" || value === null) return JSON.stringify(value)
  const key = (k: string) => (/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(k) ? k : JSON.stringify(k))
  const entries = Object.entries(value)
  const inline = `{ ${entries.map(([k, v]) => `${key(k)}: ${literal(v, indent)}`).join(", ")} }`
  if (inline.length <= 72 && !inline.includes("\n")) return inline
  const inner = `${indent}  `
  return `{\n${entries.map(([k, v]) => `${inner}${key(k)}: ${literal(v, inner)}`).join(",\n")}\n${indent}}`
}

const maxVersionOf = (version: string) => `${version.split(".")[0] ?? "0"}.99.99`

/** The manifest, as plugin.json and as the definition's `manifest` (a test keeps them equal). */
export const manifest = (n: Names) => ({
  id: n.id,
  name: n.title,
  version: "0.1.0",
  type: "service",
  description: `${n.title}: answers greet calls on the mesh`,
  license: "MIT",
  compatibility: { minVersion: n.nodeVersion, maxVersion: maxVersionOf(n.nodeVersion) },
  permissions: [`events:publish:${n.name}.started`],
  resources: { maxMemory: "128MB", maxGoroutines: 16, rateLimit: "1000/min" },
  configuration: { $schema: "config.schema.json" },
  main: "dist/index.js",
  services: [n.name]
})

const packageJson = (n: Names) =>
  json({
    name: n.name,
    version: "0.1.0",
    private: true,
    description: `${n.title}: a Blackhole plugin`,
    type: "module",
    license: "MIT",
    engines: { node: ">=20.19" },
    main: "./dist/index.js",
    types: "./dist/index.d.ts",
    exports: {
      ".": { types: "./dist/index.d.ts", default: "./dist/index.js" },
      "./contract": { types: "./dist/contract.d.ts", default: "./dist/contract.js" }
    },
    scripts: {
      build: "tsc -p . && node scripts/write-schema.mjs",
      test: "tsc -p test && vitest run"
    },
    dependencies: {
      // Not published: this checkout's SDK (see README.md to switch to a registry version).
      "@blackhole/sdk": `file:${n.sdkPath}`,
      "@effect/platform": n.versions["@effect/platform"],
      "@effect/rpc": n.versions["@effect/rpc"],
      effect: n.versions.effect
    },
    devDependencies: {
      "@effect/vitest": n.versions["@effect/vitest"],
      "@types/node": n.versions["@types/node"],
      typescript: n.versions.typescript,
      vitest: n.versions.vitest
    }
  })

const tsconfig = json({
  compilerOptions: {
    target: "ES2022",
    lib: ["ES2023"],
    types: ["node"],
    module: "NodeNext",
    moduleResolution: "NodeNext",
    strict: true,
    exactOptionalPropertyTypes: true,
    noUncheckedIndexedAccess: true,
    noImplicitOverride: true,
    noUnusedLocals: true,
    verbatimModuleSyntax: true,
    isolatedModules: true,
    skipLibCheck: true,
    declaration: true,
    sourceMap: true,
    rootDir: "src",
    outDir: "dist"
  },
  include: ["src"]
})

const testTsconfig = json({
  extends: "../tsconfig.json",
  compilerOptions: { noEmit: true, rootDir: "..", declaration: false },
  include: [".", "../src"]
})

const contract = (n: Names) => `/**
 * The \`${n.name}\` service contract: schemas only, no implementation, so a caller
 * (another plugin, a test) imports it without the plugin's code, e.g.
 * \`Services.client(${n.contract})\`.
 */
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
// The SDK builds contracts from @effect/rpc's Rpc and RpcGroup.
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Schema from "effect/Schema"

/** What \`greet\` answers. */
export const Greeting = Schema.Struct({ message: Schema.String })
/** @see Greeting */
export type Greeting = typeof Greeting.Type

/**
 * The \`${n.name}\` service on the mesh. Every method declares an access class:
 * \`read\` methods are granted to callers on request; \`write\` and \`admin\` ones
 * need a grant (\`service:${n.name}:<method>\`).
 */
export const ${n.contract} = ServiceContract.make(
  "${n.name}",
  RpcGroup.make(
    ServiceContract.read(Rpc.make("greet", { payload: { name: Schema.String }, success: Greeting }))
  )
)
`

const index = (n: Names) => `/**
 * ${n.title}: a Blackhole service plugin. It announces itself on the event
 * bus when it starts and answers \`greet\` calls on the mesh.
 *
 * The default export is the plugin definition the node loads (from
 * \`dist/index.js\`, as plugin.json's \`main\` says): the manifest, the config
 * Schema, and the program. The program may require only the SDK's context
 * services; what it returns is what the plugin serves, and its Scope's
 * finalizers are its Stop.
 */
import * as Events from "@blackhole/sdk/Events"
import * as Plugin from "@blackhole/sdk/Plugin"
import * as PluginConfig from "@blackhole/sdk/PluginConfig"
import * as PluginLogger from "@blackhole/sdk/PluginLogger"
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { ${n.contract} } from "./contract.js"

/**
 * The plugin's configuration. This Schema is the source of truth: \`npm run build\`
 * writes config.schema.json from it, which the node (and \`blackhole plugin
 * validate\`) checks an operator's config against before any plugin code runs.
 */
export const Config = PluginConfig.make(
  Schema.Struct({
    /** The word a greeting starts with. */
    greeting: Schema.optionalWith(
      Schema.String.pipe(Schema.minLength(1)).annotations({
        title: "greeting",
        description: "The word a greeting starts with",
        default: "Hello"
      }),
      { default: () => "Hello" }
    )
  })
)

export default Plugin.service({
  // The same as plugin.json (test/plugin.test.ts keeps the two equal).
  manifest: ${literal(manifest(n), "  ")},
  config: Config,
  program: Effect.gen(function* () {
    const { greeting } = yield* Config
    // Needs \`events:publish:${n.name}.started\` in plugin.json's permissions.
    yield* Events.publish("${n.name}.started", { greeting })
    yield* PluginLogger.info(\`started; greeting with "\${greeting}"\`)
    yield* Effect.addFinalizer(() => PluginLogger.info("stopped"))
    return {
      services: [
        ServiceContract.implement(${n.contract}, {
          greet: ({ name }) => Effect.succeed({ message: \`\${greeting}, \${name}!\` })
        })
      ] as const
    }
  })
})
`

const test = (n: Names) => `import * as fs from "node:fs"
import { PluginTest } from "@blackhole/sdk/testing"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { ${n.contract} } from "../src/contract.js"
import plugin from "../src/index.js"

// PluginTest runs the plugin against in-memory context services that record what it
// published, stored, logged and called: no node, no subprocess.
describe("${n.id}", () => {
  it.scoped("greets with the default greeting", () =>
    Effect.gen(function* () {
      // "manifest": grant exactly what plugin.json requests, as a node would.
      const { client } = yield* PluginTest.run(plugin, { permissions: "manifest" })
      const answer = yield* client(${n.contract}).greet({ name: "Ada" })
      assert.deepStrictEqual(answer, { message: "Hello, Ada!" })
    })
  )

  it.scoped("uses the configured greeting", () =>
    Effect.gen(function* () {
      const { client } = yield* PluginTest.run(plugin, { permissions: "manifest", config: { greeting: "Hi" } })
      const answer = yield* client(${n.contract}).greet({ name: "Ada" })
      assert.strictEqual(answer.message, "Hi, Ada!")
    })
  )

  it.scoped("announces that it started", () =>
    Effect.gen(function* () {
      const { recorder } = yield* PluginTest.run(plugin, { permissions: "manifest" })
      assert.deepStrictEqual(yield* recorder.published, [
        { type: "${n.name}.started", data: { greeting: "Hello" } }
      ])
    })
  )

  it.scoped("rejects an invalid config with its path", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(PluginTest.run(plugin, { config: { greeting: "" } }))
      assert.strictEqual(error._tag, "InvalidConfig")
      if (error._tag === "InvalidConfig") assert.strictEqual(error.issues[0]?.path, "greeting")
    })
  )

  it("declares in code exactly what plugin.json says", () => {
    const manifest: unknown = JSON.parse(fs.readFileSync(new URL("../plugin.json", import.meta.url), "utf8"))
    assert.deepStrictEqual(plugin.manifest, manifest)
  })
})
`

const writeSchema = `// Writes config.schema.json from the built plugin's config Schema (run by \`npm run build\`).
// The node and \`blackhole plugin validate\` check an operator's config against this file.
import { writeFileSync } from "node:fs"
import * as PluginConfig from "@blackhole/sdk/PluginConfig"
import definition from "../dist/index.js"

const file = new URL("../config.schema.json", import.meta.url)
writeFileSync(file, \`\${JSON.stringify(PluginConfig.toJsonSchema(definition.config), null, 2)}\\n\`)
console.log("wrote config.schema.json")
`

const readme = (n: Names) => `# ${n.title}

A Blackhole service plugin, \`${n.id}\`: it serves the
\`${n.name}\` service on the node's mesh (method \`greet\`) and publishes \`${n.name}.started\`
when it starts.

## Layout

| file | what |
|---|---|
| \`plugin.json\` | the manifest: id, type, permissions, resources, services, config schema |
| \`src/contract.ts\` | the service contract (schemas only): what callers import |
| \`src/index.ts\` | the plugin definition: config Schema (with defaults) and program |
| \`test/plugin.test.ts\` | unit tests on the SDK's in-memory test kit (\`@blackhole/sdk/testing\`) |
| \`scripts/write-schema.mjs\` | writes \`config.schema.json\` from the config Schema (part of the build) |

## Build and test

\`\`\`sh
npm run build   # tsc, then config.schema.json
npm test        # type-check the tests, then vitest
\`\`\`

\`blackhole plugin new\` linked \`node_modules/\` to the packages of the Blackhole checkout it
came from (build that checkout first: \`npm install && npm run build\` there), so both work
without an install. \`npm install\` replaces the links with packages from the npm registry,
except \`@blackhole/sdk\`, which stays linked to the checkout (see below).

## Check and run it on a node

\`\`\`sh
blackhole plugin validate .                                  # manifest + default config
blackhole plugin validate . --plugin-config '{"greeting":"Hi"}'
\`\`\`

Add this directory's parent to the node's discovery directories (\`blackhole.yaml\`):

\`\`\`yaml
plugins:
  discovery:
    directories: [/path/to/the/parent/of/this/directory]
  overrides:
    ${n.id}:
      config: { greeting: Hi }
\`\`\`

then \`blackhole start\`, and \`blackhole call ${n.name} greet '{"name":"Ada"}'\`.

## The SDK dependency

\`@blackhole/sdk\` is not published yet, so \`package.json\` points at this checkout:
\`"@blackhole/sdk": "file:${n.sdkPath}"\`. Once it is on a registry, replace that with a
version range (e.g. \`"@blackhole/sdk": "^0.1.0"\`) and run \`npm install\`.
`

const gitignore = "node_modules/\ndist/\n"

/** Every file of the package: path relative to its directory → contents. */
export const files = (n: Names): ReadonlyArray<readonly [path: string, contents: string]> => [
  ["package.json", packageJson(n)],
  ["tsconfig.json", tsconfig],
  ["plugin.json", json(manifest(n))],
  ["src/contract.ts", contract(n)],
  ["src/index.ts", index(n)],
  ["test/tsconfig.json", testTsconfig],
  ["test/plugin.test.ts", test(n)],
  ["scripts/write-schema.mjs", writeSchema],
  ["README.md", readme(n)],
  [".gitignore", gitignore]
]

/** The packages a scaffold needs, linked from the checkout (name → range written to package.json). */
export const dependencyNames = [
  "effect",
  "@effect/platform",
  "@effect/rpc",
  "@effect/vitest",
  "@types/node",
  "typescript",
  "vitest"
] as const
