#!/usr/bin/env node
// Builds the standalone bundle of every plugin whose plugin.json names a `bundle`: the plugin's
// `main` and the SDK runtime in one tree-shaken ES module whose entry runs the runtime with the
// plugin's definition. The host runs such a bundle directly (see PluginManifest `bundle`).
//
//   node scripts/bundle-plugins.mjs [plugin directory or parent of plugin directories ...]
//
// With no arguments: packages/plugins/* and the benchmark fixtures. Run after `tsc -b`.
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as esbuild from "esbuild"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const sdkDist = path.join(root, "packages/sdk/dist")
const runtime = path.join(sdkDist, "PluginRuntime.js")

const pluginDirs = (dir) => {
  if (fs.existsSync(path.join(dir, "plugin.json"))) return [dir]
  if (!fs.existsSync(dir)) return []
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && fs.existsSync(path.join(dir, entry.name, "plugin.json")))
    .map((entry) => path.join(dir, entry.name))
}

const targets = (
  process.argv.length > 2
    ? process.argv.slice(2).map((arg) => path.resolve(arg))
    : [path.join(root, "packages/plugins"), path.join(root, "bench/fixtures/plugins")]
).flatMap(pluginDirs)

const bundle = async (dir) => {
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, "plugin.json"), "utf8"))
  if (typeof manifest.bundle !== "string") return false
  const main = path.resolve(dir, manifest.main ?? "dist/index.js")
  if (!fs.existsSync(main)) throw new Error(`${main} is missing; build ${dir} first`)
  const outfile = path.resolve(dir, manifest.bundle)
  const started = Date.now()
  const result = await esbuild.build({
    metafile: true,
    absWorkingDir: root,
    stdin: {
      contents: [
        `import definition from ${JSON.stringify(main)}`,
        `import { runMain } from ${JSON.stringify(runtime)}`,
        "runMain(definition)"
      ].join("\n"),
      resolveDir: dir,
      sourcefile: "standalone-entry.js",
      loader: "js"
    },
    outfile,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    minify: true,
    keepNames: true,
    sourcemap: "linked",
    legalComments: "none",
    logLevel: "warning",
    // CommonJS dependencies may call require(); give the ES module one.
    banner: {
      js: 'import { createRequire as __bhRequire } from "node:module"; const require = __bhRequire(import.meta.url);'
    }
  })
  // What the bundle was built from (the plugin's own files and the SDK's), by content: the host
  // runs the bundle only while these still match, so a stale bundle never hides newer code.
  const inputs = {}
  for (const input of Object.keys(result.metafile.inputs)) {
    if (input.includes("standalone-entry.js")) continue
    const file = path.resolve(root, input)
    const inPlugin = !path.relative(dir, file).startsWith("..")
    const inSdk = !path.relative(sdkDist, file).startsWith("..")
    if (!inPlugin && !inSdk) continue
    const key = inPlugin ? path.relative(dir, file) : file
    inputs[key] = crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex")
  }
  fs.writeFileSync(`${outfile}.inputs.json`, `${JSON.stringify({ inputs }, null, 1)}\n`)
  const kib = (fs.statSync(outfile).size / 1024).toFixed(0)
  console.log(`bundle-plugins: ${path.relative(root, outfile)} (${kib} KiB, ${Date.now() - started} ms)`)
  return true
}

try {
  const built = (await Promise.all(targets.map(bundle))).filter(Boolean).length
  if (built === 0) console.log("bundle-plugins: nothing to bundle")
} catch (error) {
  console.error(`bundle-plugins: ${error instanceof Error ? error.message : String(error)}`)
  process.exit(1)
}
