// Benchmark harness: interleaved repetitions of a baseline and its subjects in one process,
// medians and percentiles, and results in the shape DESIGN.md "Interfaces" gives.
// It measures and reports; it never asserts a timing.
import * as os from "node:os"

/** The machine line of latest.json. */
export const machine = () => ({
  node: process.version,
  cpu: os.cpus()[0]?.model?.trim() ?? "unknown",
  cores: os.availableParallelism?.() ?? os.cpus().length
})

/** Nanoseconds on the monotonic clock, as a bigint. */
export const now = () => process.hrtime.bigint()

/** Milliseconds between two `now()` readings. */
export const elapsedMs = (start, end = now()) => Number(end - start) / 1e6

/** Median of a non-empty list of numbers (mean of the two middle values for an even count). */
export const median = (values) => {
  if (values.length === 0) throw new Error("median of no values")
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** Nearest-rank percentile (`p` in 0..100) of a non-empty list of numbers. */
export const percentile = (values, p) => {
  if (values.length === 0) throw new Error("percentile of no values")
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]
}

/**
 * Runs `op(i)` for i = 0..count-1 one after another and returns operations per second.
 * `op` may return a promise; it is awaited only when it does, so synchronous baselines are not
 * charged for a microtask per operation.
 */
export const throughput = async (count, op) => {
  const start = now()
  for (let i = 0; i < count; i++) {
    const pending = op(i)
    if (pending !== undefined && typeof pending.then === "function") await pending
  }
  return count / (elapsedMs(start) / 1000)
}

/**
 * Times a whole batch: `batch(count)` performs `count` operations (for example one
 * `runPromise` of an Effect that loops) and the result is operations per second.
 */
export const batchThroughput = async (count, batch) => {
  const start = now()
  await batch(count)
  return count / (elapsedMs(start) / 1000)
}

/**
 * Times each of `count` sequential calls of `op(i)` with `process.hrtime.bigint` and returns
 * the samples in milliseconds (for p50/p99 latency).
 */
export const latencySamples = async (count, op) => {
  const samples = new Array(count)
  for (let i = 0; i < count; i++) {
    const start = now()
    const pending = op(i)
    if (pending !== undefined && typeof pending.then === "function") await pending
    samples[i] = elapsedMs(start)
  }
  return samples
}

/** p50 and p99 of latency samples (milliseconds). */
export const latencySummary = (samples) => ({
  p50: percentile(samples, 50),
  p99: percentile(samples, 99),
  count: samples.length
})

/**
 * Runs `warmup` unrecorded rounds, then `reps` recorded rounds; every round runs each side once,
 * in the order given (baseline first, then each subject: A B A B ... in the same process), so
 * drift in the machine's load hits every side alike. A side's `run(round)` returns one
 * measurement (a number, or an array of latency samples). Returns `{ [name]: measurement[] }`.
 */
export const alternate = async ({ warmup, reps, sides, onRound }) => {
  const names = sides.map((side) => side.name)
  if (new Set(names).size !== names.length) throw new Error(`duplicate side names: ${names.join(", ")}`)
  const recorded = Object.fromEntries(names.map((name) => [name, []]))
  for (let round = 0; round < warmup + reps; round++) {
    for (const side of sides) {
      const measurement = await side.run(round)
      if (round >= warmup) recorded[side.name].push(measurement)
    }
    onRound?.(round, round < warmup)
  }
  return recorded
}

const sameTarget = (target) => {
  if (target === null || target === undefined) return null
  const { on, op, value } = target
  if (on !== "ratio" && on !== "value") throw new Error(`target.on must be "ratio" or "value", got ${on}`)
  if (op !== "<=" && op !== ">=") throw new Error(`target.op must be "<=" or ">=", got ${op}`)
  if (typeof value !== "number") throw new Error("target.value must be a number")
  return { on, op, value }
}

/**
 * One row of `results[]`: ratio is value ÷ baseline; `met` is null without a target, else
 * whether the target's side (`ratio` or `value`) satisfies `op value`.
 */
export const result = ({ scenario, metric, unit, value, baseline, baselineName, better, target, notes }) => {
  if (better !== "lower" && better !== "higher") throw new Error(`better must be "lower" or "higher"`)
  const checked = sameTarget(target)
  const ratio = baseline === 0 ? null : value / baseline
  let met = null
  if (checked !== null) {
    const measured = checked.on === "ratio" ? ratio : value
    met =
      measured === null ? false : checked.op === "<=" ? measured <= checked.value : measured >= checked.value
  }
  return { scenario, metric, unit, value, baseline, baselineName, ratio, better, target: checked, met, notes }
}

const formatNumber = (n) => {
  if (n === null || n === undefined || Number.isNaN(n)) return "–"
  const abs = Math.abs(n)
  if (abs >= 1000) return Math.round(n).toLocaleString("en-US")
  if (abs >= 100) return n.toFixed(0)
  if (abs >= 10) return n.toFixed(1)
  if (abs >= 1) return n.toFixed(2)
  return n.toPrecision(3)
}

const formatTarget = (target) =>
  target === null ? "–" : `${target.on === "ratio" ? "ratio" : "value"} ${target.op} ${target.value}`

const formatMet = (met) => (met === null ? "–" : met ? "met" : "not met")

/**
 * The Markdown table printed to stdout (and pasted into bench/README.md), padded so columns line
 * up (the way Biome formats Markdown tables).
 */
export const markdownTable = (results) => {
  const columns = [
    { title: "scenario", right: false, cell: (r) => r.scenario },
    { title: "metric", right: false, cell: (r) => r.metric },
    { title: "value", right: true, cell: (r) => `${formatNumber(r.value)} ${r.unit}` },
    { title: "baseline", right: true, cell: (r) => `${formatNumber(r.baseline)} ${r.unit}` },
    { title: "baseline name", right: false, cell: (r) => r.baselineName },
    { title: "ratio", right: true, cell: (r) => (r.ratio === null ? "–" : r.ratio.toFixed(2)) },
    { title: "better", right: false, cell: (r) => r.better },
    { title: "target", right: false, cell: (r) => formatTarget(r.target) },
    { title: "met", right: false, cell: (r) => formatMet(r.met) }
  ]
  const cells = results.map((r) => columns.map((column) => column.cell(r)))
  const widths = columns.map((column, i) =>
    Math.max(3, column.title.length, ...cells.map((row) => row[i].length))
  )
  const line = (row) =>
    `| ${row.map((cell, i) => (columns[i].right ? cell.padStart(widths[i]) : cell.padEnd(widths[i]))).join(" | ")} |`
  const rule = `| ${columns.map((column, i) => (column.right ? `${"-".repeat(widths[i] - 1)}:` : "-".repeat(widths[i]))).join(" | ")} |`
  return [line(columns.map((column) => column.title)), rule, ...cells.map(line)].join("\n")
}
