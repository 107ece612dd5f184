// Blackhole benchmark runner: `npm run bench [-- --quick] [-- --only <scenario>[,<scenario>...]]`.
// Runs each scenario (baseline and Blackhole path alternated in this one process), writes
// bench/results/latest.json in the shape DESIGN.md "Interfaces" gives, and prints a Markdown table.
// Timings are never asserted: the exit code is 0 unless a scenario crashes (1) or the arguments
// are wrong (2).
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { machine, markdownTable } from "./lib/harness.mjs"

const here = path.dirname(fileURLToPath(import.meta.url))
const resultsFile = path.join(here, "results", "latest.json")

// Every scenario of DESIGN.md, in the order they run (DESIGN's order). Each module exports `id`
// and `run({ quick, log }) => Promise<results[]>`.
const scenarios = {
  "call-rtt": () => import("./scenarios/call-rtt.mjs"),
  "call-throughput": () => import("./scenarios/call-throughput.mjs"),
  "context-calls": () => import("./scenarios/context-calls.mjs"),
  "cold-start": () => import("./scenarios/cold-start.mjs"),
  "idle-rss": () => import("./scenarios/idle-rss.mjs"),
  fanout: () => import("./scenarios/fanout.mjs"),
  boot: () => import("./scenarios/boot.mjs"),
  storage: () => import("./scenarios/storage.mjs"),
  "peer-moleculer": () => import("./scenarios/peer-moleculer.mjs"),
  "noisy-neighbour": () => import("./scenarios/noisy-neighbour.mjs")
}

const usage = `usage: node bench/run.mjs [--quick] [--only <scenario>[,<scenario>...]]
  --quick   fast smoke run (few iterations; proves the benchmarks run, numbers are rough)
  --only    run only the named scenarios; available: ${Object.keys(scenarios).join(", ")}`

const fail = (message) => {
  process.stderr.write(`${message}\n${usage}\n`)
  process.exit(2)
}

const parseArgs = (argv) => {
  const options = { quick: false, only: null }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === "--quick") options.quick = true
    else if (arg === "--help" || arg === "-h") {
      process.stdout.write(`${usage}\n`)
      process.exit(0)
    } else if (arg === "--only" || arg.startsWith("--only=")) {
      const value = arg === "--only" ? argv[++i] : arg.slice("--only=".length)
      if (value === undefined || value === "") fail("--only needs a scenario id")
      options.only = [...(options.only ?? []), ...value.split(",").filter((id) => id !== "")]
    } else fail(`unknown argument: ${arg}`)
  }
  return options
}

const options = parseArgs(process.argv.slice(2))
const selected = options.only ?? Object.keys(scenarios)
for (const id of selected) {
  if (scenarios[id] === undefined) fail(`unknown scenario: ${id}`)
}

const started = Date.now()
const log = (message) =>
  process.stderr.write(`[bench +${((Date.now() - started) / 1000).toFixed(1)}s] ${message}\n`)
const results = []
let crashed = false

log(`mode: ${options.quick ? "quick" : "full"}; scenarios: ${selected.join(", ")}`)
for (const id of selected) {
  const scenarioStart = Date.now()
  try {
    const scenario = await scenarios[id]()
    const rows = await scenario.run({ quick: options.quick, log })
    results.push(...rows)
    log(`${id}: done in ${((Date.now() - scenarioStart) / 1000).toFixed(1)} s`)
  } catch (error) {
    crashed = true
    log(`${id}: CRASHED: ${error?.stack ?? error}`)
  }
}

const report = { machine: machine(), results }
fs.mkdirSync(path.dirname(resultsFile), { recursive: true })
fs.writeFileSync(resultsFile, `${JSON.stringify(report, null, 2)}\n`)

const { node, cpu, cores } = report.machine
process.stdout.write(
  `Machine: node ${node}, ${cpu}, ${cores} cores${options.quick ? " (quick run: rough numbers)" : ""}\n\n` +
    `${markdownTable(results)}\n\n` +
    `Wrote ${path.relative(process.cwd(), resultsFile)} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`
)
process.exitCode = crashed ? 1 : 0
