#!/usr/bin/env node
// Builds the standalone bundle of every plugin whose plugin.json names a `bundle`: the plugin's
// `main` and the SDK runtime in one tree-shaken script, run directly by the host (see
// PluginManifest `bundle`). Four files per plugin, for `bundle: "dist/plugin.bundle.cjs"`:
//
//   dist/plugin.bundle.cjs              the entry the host runs: a small CommonJS launcher (below)
//   dist/plugin.bundle.code.cjs         the plugin and the runtime, minified, as one CommonJS script
//   dist/plugin.bundle.code.cjs.cache   V8's code cache of that script: SHA-256 of the script, then
//                                       the cache V8 made after evaluating it
//   dist/plugin.bundle.cjs.inputs.json  the SHA-256 of every file the bundle was built from and of
//                                       the launcher and script: the host runs the bundle only while
//                                       all of them match
//
// The launcher compiles the script with the cache when the cache was made from this build's script
// (the launcher carries the script's hash; the host checked the script against it before running
// the launcher) and V8 accepts it (same V8, same V8 flags); otherwise it compiles from source, as if
// there were no cache. Parsing and compiling the bundle is a third of what a plugin process spends
// before it can answer its host; the cache makes that a deserialisation. Making the cache evaluates
// the script once, here: the plugin module's top level runs (its program does not).
//
// The launcher is CommonJS and hashes nothing itself: an ES module entry starts Node's ES module
// loader and hashing loads OpenSSL, ~1.3 MiB of an idle plugin's memory each.
//
//   node scripts/bundle-plugins.mjs [plugin directory or parent of plugin directories ...]
//
// With no arguments: packages/plugins/* and the benchmark fixtures. Run after `tsc -b`.
import * as childProcess from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as SubprocessLoader from "@blackhole/core/SubprocessLoader"
import * as PluginManifest from "@blackhole/sdk/PluginManifest"
import * as Effect from "effect/Effect"
import * as esbuild from "esbuild"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const sdkDist = path.join(root, "packages/sdk/dist")
const runtime = path.join(sdkDist, "PluginRuntime.js")

/** The launcher's argument that makes it write the code cache instead of running the plugin. */
const writeCacheFlag = "--write-code-cache"

/** The entry the host runs: compiles `codeName` (with its code cache when valid) and runs the plugin. */
const launcher = (
  codeName,
  digest
) => `// Built by scripts/bundle-plugins.mjs: runs ${codeName} with V8's code cache.
"use strict"
const fs = require("node:fs")
const path = require("node:path")
const vm = require("node:vm")

const file = path.join(__dirname, ${JSON.stringify(codeName)})
const cacheFile = \`\${file}.cache\`
/** SHA-256 of the script this launcher was built with; the host checks the script against it. */
const digest = Buffer.from(${JSON.stringify(digest.toString("hex"))}, "hex")

/** Compiles the script, with the cache when it was made from this build's script; the buffers stay here. */
const compile = () => {
  const source = fs.readFileSync(file, "utf8")
  let cachedData
  try {
    const cache = fs.readFileSync(cacheFile)
    // Only a cache made from this script: V8 itself checks little more than its length.
    if (cache.subarray(0, digest.length).equals(digest)) cachedData = cache.subarray(digest.length)
  } catch {
    // No cache: compile from source.
  }
  const wrapped = \`(function (exports, require, module, __filename, __dirname) {\${source}\\n})\`
  return new vm.Script(wrapped, { filename: file, cachedData })
}

const script = compile()
const bundled = { exports: {} }
script.runInThisContext().call(bundled.exports, bundled.exports, require, bundled, file, __dirname)
if (process.argv[2] === ${JSON.stringify(writeCacheFlag)}) {
  fs.writeFileSync(cacheFile, Buffer.concat([digest, script.createCachedData()]))
} else {
  bundled.exports.runMain(bundled.exports.definition)
}
`

const sha256 = (data) => crypto.createHash("sha256").update(data).digest()

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
  const manifestText = fs.readFileSync(path.join(dir, "plugin.json"), "utf8")
  const manifest = JSON.parse(manifestText)
  if (typeof manifest.bundle !== "string") return false
  const main = path.resolve(dir, manifest.main ?? "dist/index.js")
  if (!fs.existsSync(main)) throw new Error(`${main} is missing; build ${dir} first`)
  if (!manifest.bundle.endsWith(".cjs")) {
    throw new Error(
      `${path.join(dir, "plugin.json")}: "bundle" is ${JSON.stringify(manifest.bundle)}; name a .cjs file ` +
        `(e.g. "dist/plugin.bundle.cjs"): the bundle's launcher is a CommonJS script`
    )
  }
  const outfile = path.resolve(dir, manifest.bundle)
  const codeFile = `${outfile.slice(0, -".cjs".length)}.code.cjs`
  const started = Date.now()
  const result = await esbuild.build({
    metafile: true,
    absWorkingDir: root,
    stdin: {
      contents: [
        `export { default as definition } from ${JSON.stringify(main)}`,
        `export { runMain } from ${JSON.stringify(runtime)}`
      ].join("\n"),
      resolveDir: dir,
      sourcefile: "standalone-entry.js",
      loader: "js"
    },
    outfile: codeFile,
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    minify: true,
    // No keepNames: it wraps every named closure in a call that defines its name, at run time, on
    // hot paths too (~8% of a plugin's CPU under load). Errors name themselves (`_tag`, `name`).
    keepNames: false,
    sourcemap: "linked",
    legalComments: "none",
    logLevel: "warning"
  })
  fs.writeFileSync(outfile, launcher(path.basename(codeFile), sha256(fs.readFileSync(codeFile))))
  // Made by running the launcher itself: the cache holds what evaluating the script compiled. V8
  // accepts a cache only under the V8 flags it was made with: those the host will start it with.
  const v8Flags = SubprocessLoader.v8Flags(Effect.runSync(PluginManifest.decodeJson(manifestText, dir)))
  childProcess.execFileSync(process.execPath, [...v8Flags, outfile, writeCacheFlag], {
    stdio: ["ignore", "ignore", "pipe"]
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
    inputs[key] = sha256(fs.readFileSync(file)).toString("hex")
  }
  // The launcher and the script too: the launcher trusts the host to have checked the script.
  const outputs = {}
  for (const file of [outfile, codeFile])
    outputs[path.relative(dir, file)] = sha256(fs.readFileSync(file)).toString("hex")
  fs.writeFileSync(`${outfile}.inputs.json`, `${JSON.stringify({ inputs, outputs }, null, 1)}\n`)
  const kib = (fs.statSync(codeFile).size / 1024).toFixed(0)
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
