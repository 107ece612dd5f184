/**
 * `blackhole plugin new`: the generated package builds (tsc + config.schema.json)
 * and its own tests pass, in a temp directory, with no install and no network:
 * its node_modules/ links to this checkout's packages. Then `plugin validate`
 * accepts it as the node would.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { assertBuilt, blackhole, cleanEnv, cleanup, exec, stripAnsi, tempDir } from "./support/cli.js"

const scratch = tempDir("bh-plugin-new-")
beforeAll(assertBuilt)
afterAll(() => cleanup(scratch))

/** `npm run <script>` in `cwd`, with the npm that runs this test when there is one. */
const npmRun = (script: string, cwd: string) => {
  const npmCli = process.env.npm_execpath ?? ""
  const env = cleanEnv({ NO_COLOR: "1" })
  return npmCli.endsWith(".js")
    ? exec(process.execPath, [npmCli, "run", script], { cwd, env, timeoutMillis: 300_000 })
    : exec("npm", ["run", script], { cwd, env, timeoutMillis: 300_000 })
}

describe("plugin new", { timeout: 600_000 }, () => {
  it("scaffolds a package whose build and tests pass, and which validates", async () => {
    const created = await blackhole(["plugin", "new", "hello-world"], { cwd: scratch })
    assert.strictEqual(created.code, 0, created.stderr)
    assert.include(created.stdout, "dev.local.hello-world")
    const dir = path.join(scratch, "hello-world")
    for (const file of [
      "package.json",
      "tsconfig.json",
      "plugin.json",
      "src/contract.ts",
      "src/index.ts",
      "test/plugin.test.ts",
      "scripts/write-schema.mjs",
      "README.md"
    ]) {
      assert.isTrue(fs.existsSync(path.join(dir, file)), `${file} was generated`)
    }
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"))
    assert.match(pkg.dependencies["@blackhole/sdk"], /^file:\/.*\/packages\/sdk$/)
    assert.strictEqual(pkg.type, "module")
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, "plugin.json"), "utf8"))
    assert.deepInclude(manifest, { id: "dev.local.hello-world", type: "service", services: ["hello-world"] })
    assert.deepStrictEqual(manifest.configuration, { $schema: "config.schema.json" })

    // Before the build: valid, with warnings about what the build makes.
    const unbuilt = await blackhole(["plugin", "validate", dir, "--json"])
    assert.strictEqual(unbuilt.code, 0, unbuilt.stdout + unbuilt.stderr)
    assert.deepStrictEqual(
      JSON.parse(unbuilt.stdout).warnings.map((warning: { path: string }) => warning.path),
      ["main", "configuration.$schema"]
    )

    const build = await npmRun("build", dir)
    assert.strictEqual(build.code, 0, `npm run build:\n${build.stdout}\n${build.stderr}`)
    assert.isTrue(fs.existsSync(path.join(dir, "dist", "index.js")))
    const schema = JSON.parse(fs.readFileSync(path.join(dir, "config.schema.json"), "utf8"))
    assert.strictEqual(schema.properties.greeting.default, "Hello")

    const test = await npmRun("test", dir)
    assert.strictEqual(test.code, 0, `npm test:\n${test.stdout}\n${test.stderr}`)
    assert.match(stripAnsi(test.stdout), /Tests +5 passed/)

    const valid = await blackhole(["plugin", "validate", dir, "--plugin-config", '{"greeting":"Hi"}'])
    assert.strictEqual(valid.code, 0, valid.stdout + valid.stderr)
    assert.include(valid.stdout, "✓ valid")
    assert.notInclude(valid.stdout, "warning")
    const invalid = await blackhole(["plugin", "validate", dir, "--plugin-config", '{"greeting":""}'])
    assert.strictEqual(invalid.code, 1)
    assert.include(invalid.stdout, "greeting:")
  })

  it("writes into --directory, and refuses a directory that is not empty", async () => {
    const target = path.join(scratch, "elsewhere", "pkg")
    const created = await blackhole(["plugin", "new", "other", "--directory", target, "--no-link"])
    assert.strictEqual(created.code, 0, created.stderr)
    assert.isTrue(fs.existsSync(path.join(target, "plugin.json")))
    assert.isFalse(fs.existsSync(path.join(target, "node_modules")), "--no-link leaves node_modules to npm")

    const again = await blackhole(["plugin", "new", "other", "--directory", target])
    assert.strictEqual(again.code, 1)
    assert.include(again.stderr, "already exists and is not an empty directory")
  })

  it("rejects a name that cannot name a plugin (usage error)", async () => {
    for (const name of ["Hello", "9lives", "a--b", "with_underscore", "trailing-"]) {
      const result = await blackhole(["plugin", "new", name], { cwd: scratch })
      assert.strictEqual(result.code, 2, `${name}: ${result.stderr}`)
      assert.include(result.stderr, "cannot name a plugin")
      assert.isFalse(fs.existsSync(path.join(scratch, name)))
    }
    const badId = await blackhole(["plugin", "new", "fine", "--id", "Not.An.Id"], { cwd: scratch })
    assert.strictEqual(badId.code, 2)
    assert.include(badId.stderr, "is not a plugin id")
  })
})
