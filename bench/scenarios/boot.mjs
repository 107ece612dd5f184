// Scenario `boot` (issue 4, item 6): a node booting with 1, 10 and 50 subprocess plugins, to all
// plugins running: wall time and total RSS, vs spawning as many bare nodes at once.
//
// Sides, alternated in every round (baseline first), per plugin count N:
//   bare  wall time: N `node -e 0` spawned at once from this process, until the last has exited.
//         RSS: N idle bare nodes (`setInterval`) spawned at once, summed VmRSS 500 ms after the
//         last one is up (then killed).
//   node  BlackholeNode.layer in a fresh data dir with `discovery` over a directory of N plugin
//         directories (copies of the bench echo plugin, ids bench.boot.p<i>, each serving its own
//         service), SubprocessLoader defaults (sandbox "permission"): from building the layer to
//         the layer being up (the node's launch runs `startAll`), every plugin checked `running`.
//         RSS: the summed VmRSS of the N plugin processes 500 ms later (the host not included).
// The plugin directories live in bench/tmp/ (inside the repository, so that the plugins resolve
// @blackhole/sdk and effect from its node_modules under the permission sandbox) and are removed
// at the end.
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { PluginManager } from "@blackhole/core/PluginManager"
import * as Effect from "effect/Effect"
import { alternate, median, now, result } from "../lib/harness.mjs"
import { fixturePlugin, readRss, startNode } from "../lib/node.mjs"
import { reap, reapAll, spawnTracked } from "../lib/procs.mjs"

export const id = "boot"

const here = path.dirname(fileURLToPath(import.meta.url))
const scratch = path.join(here, "..", "tmp")

const SETTINGS = {
  quick: { tiers: [1, 10], warmup: { 1: 0, 10: 0 }, reps: { 1: 1, 10: 1 } },
  full: { tiers: [1, 10, 50], warmup: { 1: 1, 10: 0, 50: 0 }, reps: { 1: 5, 10: 3, 50: 2 } }
}

const MiB = 1024 * 1024
const SETTLE_MS = 500
const sleep = (millis) => new Promise((resolve) => setTimeout(resolve, millis))
const seconds = (start) => Number(now() - start) / 1e9

/** N plugin directories (copies of the bench echo plugin) under one root; their node config. */
const makePluginTree = (count) => {
  fs.mkdirSync(scratch, { recursive: true })
  const root = fs.mkdtempSync(path.join(scratch, `boot-${count}-`))
  const source = fixturePlugin("echo")
  const manifest = JSON.parse(fs.readFileSync(path.join(source, "plugin.json"), "utf8"))
  const pluginConfig = {}
  for (let i = 0; i < count; i++) {
    const dir = path.join(root, `p${i}`)
    fs.mkdirSync(dir)
    for (const file of ["index.mjs", "contract.mjs"])
      fs.copyFileSync(path.join(source, file), path.join(dir, file))
    // Its standalone bundle too (built by `npm run build`), as a shipped plugin has it.
    if (fs.existsSync(path.join(source, "dist"))) {
      fs.cpSync(path.join(source, "dist"), path.join(dir, "dist"), { recursive: true })
    }
    const pluginId = `bench.boot.p${i}`
    fs.writeFileSync(
      path.join(dir, "plugin.json"),
      JSON.stringify({ ...manifest, id: pluginId, services: [`boot${i}`] }, null, 2)
    )
    pluginConfig[pluginId] = { service: `boot${i}` }
  }
  return { root, pluginConfig, remove: () => fs.rmSync(root, { recursive: true, force: true }) }
}

/** N `node -e 0` at once: seconds until all have exited. */
const bareBoot = async (count) => {
  const start = now()
  const results = await Promise.all(
    Array.from(
      { length: count },
      () => spawnTracked(process.execPath, ["-e", "0"], { stdio: "ignore" }).exited
    )
  )
  const elapsed = seconds(start)
  if (results.some((r) => r.code !== 0)) throw new Error("a bare node -e 0 failed")
  return elapsed
}

/** N idle bare nodes at once: their summed VmRSS in MiB once all are up (+ settle time). */
const bareRss = async (count) => {
  const procs = Array.from({ length: count }, () =>
    spawnTracked(process.execPath, ["-e", "process.stdout.write('up'); setInterval(() => {}, 1000)"], {
      stdio: ["ignore", "pipe", "ignore"]
    })
  )
  try {
    await Promise.all(
      procs.map(
        (proc) =>
          new Promise((resolve, reject) => {
            proc.child.stdout.once("data", resolve)
            proc.exited.then(() => reject(new Error("an idle bare node exited")))
          })
      )
    )
    await sleep(SETTLE_MS)
    let total = 0
    for (const proc of procs) total += readRss(proc.child.pid) ?? Number.NaN
    return total / MiB
  } finally {
    await Promise.all(procs.map(reap))
  }
}

/** Boots a node over the plugin tree: seconds to all-ready, and the plugins' summed VmRSS in MiB. */
const nodeBoot = async (tree, count, log) => {
  const start = now()
  const node = await startNode({ discovery: { directories: [tree.root] }, pluginConfig: tree.pluginConfig })
  try {
    const elapsed = seconds(start)
    const plugins = await node.run(Effect.flatMap(PluginManager, (manager) => manager.list))
    const running = plugins.filter((plugin) => plugin.state === "running")
    if (running.length !== count) {
      const bad = plugins.find((plugin) => plugin.state !== "running")
      throw new Error(
        `boot: ${running.length}/${count} plugins running (${bad?.id}: ${bad?.state} ${bad?.error})`
      )
    }
    await sleep(SETTLE_MS)
    let rss = 0
    for (const plugin of running)
      rss += plugin.pid === null ? Number.NaN : (readRss(plugin.pid) ?? Number.NaN)
    return { elapsed, rss: rss / MiB }
  } finally {
    const stopping = now()
    await node.close()
    log(`boot ${count} plugins: node stopped in ${seconds(stopping).toFixed(2)} s (not counted)`)
  }
}

export const run = async ({ quick, log }) => {
  const settings = quick ? SETTINGS.quick : SETTINGS.full
  const trees = []
  try {
    const rows = []
    for (const count of settings.tiers) {
      const tree = makePluginTree(count)
      trees.push(tree)
      const warmup = settings.warmup[count]
      const reps = settings.reps[count]
      const rounds = await alternate({
        warmup,
        reps,
        onRound: (round, warm) =>
          log(`boot ${count} plugins: round ${round + 1}/${warmup + reps}${warm ? " (warm-up)" : ""}`),
        sides: [
          { name: "bare", run: async () => ({ elapsed: await bareBoot(count), rss: await bareRss(count) }) },
          { name: "node", run: () => nodeBoot(tree, count, log) }
        ]
      })
      const shape = `median of ${reps} round(s) after ${warmup} warm-up, sides alternated in one process`
      rows.push(
        result({
          scenario: id,
          metric: `all-ready-${count}`,
          unit: "s",
          value: median(rounds.node.map((r) => r.elapsed)),
          baseline: median(rounds.bare.map((r) => r.elapsed)),
          baselineName: `${count} × node -e 0 at once`,
          better: "lower",
          target: count === 50 ? { on: "ratio", op: "<=", value: 1.5 } : null,
          notes:
            `subject: BlackholeNode.layer (SQLite storage, identity) discovering ${count} subprocess plugin(s) ` +
            "(bench echo copies) and starting them (the node's startAll), build → every plugin running; each " +
            "plugin: spawn, SDK runtime load, handshake and Start over its extra stdio pipe (fd 3, Blackhole " +
            "framing), no payload, sandbox permission (loader default); baseline: " +
            `${count} \`node -e 0\` spawned at once from the same parent, spawn → last exit, no channel, no ` +
            `framing, no payload, no sandbox; ${shape}`
        }),
        result({
          scenario: id,
          metric: `total-rss-${count}`,
          unit: "MiB",
          value: median(rounds.node.map((r) => r.rss)),
          baseline: median(rounds.bare.map((r) => r.rss)),
          baselineName: `${count} idle bare nodes`,
          better: "lower",
          target: null,
          notes:
            `subject: summed VmRSS of the ${count} plugin processes ${SETTLE_MS} ms after all-ready (host ` +
            "process not included), sandbox permission; baseline: summed VmRSS of " +
            `${count} idle bare nodes (\`setInterval\`) spawned at once, ${SETTLE_MS} ms after the last is up, ` +
            `no sandbox; ${shape}`
        })
      )
    }
    return rows
  } finally {
    for (const tree of trees) tree.remove()
    try {
      fs.rmdirSync(scratch)
    } catch {
      // Not empty (another run) or already gone.
    }
    await reapAll()
  }
}
