/**
 * Prometheus text exposition (format 0.0.4) of Effect's Metric registry plus
 * gauges sampled at scrape time. Every family gets HELP and TYPE lines once,
 * whatever its label sets.
 */
import type * as MetricPair from "effect/MetricPair"
import * as MetricState from "effect/MetricState"
import * as Option from "effect/Option"

/** A gauge sample computed at scrape time (plugin state, memory…). */
export interface Sample {
  readonly name: string
  readonly help: string
  readonly type: "gauge" | "counter"
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

interface Family {
  help: string
  type: string
  lines: Array<string>
}

const escapeLabel = (value: string) => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"')
const escapeHelp = (value: string) => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")
const sanitize = (name: string) => name.replace(/[^a-zA-Z0-9_:]/g, "_")

const labelText = (labels: ReadonlyArray<readonly [string, string]>): string =>
  labels.length === 0
    ? ""
    : `{${labels.map(([key, value]) => `${sanitize(key)}="${escapeLabel(value)}"`).join(",")}}`

const number = (value: number | bigint): string =>
  typeof value === "bigint"
    ? value.toString()
    : Number.isNaN(value)
      ? "NaN"
      : value === Number.POSITIVE_INFINITY
        ? "+Inf"
        : value === Number.NEGATIVE_INFINITY
          ? "-Inf"
          : String(value)

/** Renders the registry snapshot and the extra samples. */
export const render = (
  snapshot: ReadonlyArray<MetricPair.MetricPair.Untyped>,
  extra: ReadonlyArray<Sample> = []
): string => {
  const families = new Map<string, Family>()
  const family = (name: string, help: string, type: string) => {
    let found = families.get(name)
    if (found === undefined) {
      found = { help, type, lines: [] }
      families.set(name, found)
    }
    return found
  }
  for (const pair of snapshot) {
    const name = sanitize(pair.metricKey.name)
    const help = Option.getOrElse(pair.metricKey.description, () => name)
    const labels = pair.metricKey.tags.map((tag) => [tag.key, tag.value] as const)
    const state = pair.metricState
    if (MetricState.isCounterState(state)) {
      family(name, help, "counter").lines.push(`${name}${labelText(labels)} ${number(state.count)}`)
    } else if (MetricState.isGaugeState(state)) {
      family(name, help, "gauge").lines.push(`${name}${labelText(labels)} ${number(state.value)}`)
    } else if (MetricState.isHistogramState(state)) {
      const f = family(name, help, "histogram")
      // Effect's buckets are already cumulative.
      for (const [bound, count] of state.buckets) {
        const le = bound === Number.POSITIVE_INFINITY ? "+Inf" : String(bound)
        f.lines.push(`${name}_bucket${labelText([...labels, ["le", le]])} ${count}`)
      }
      if (!state.buckets.some(([bound]) => bound === Number.POSITIVE_INFINITY)) {
        f.lines.push(`${name}_bucket${labelText([...labels, ["le", "+Inf"]])} ${state.count}`)
      }
      f.lines.push(`${name}_sum${labelText(labels)} ${number(state.sum)}`)
      f.lines.push(`${name}_count${labelText(labels)} ${state.count}`)
    } else if (MetricState.isFrequencyState(state)) {
      const f = family(name, help, "counter")
      for (const [key, count] of state.occurrences) {
        f.lines.push(`${name}${labelText([...labels, ["key", key]])} ${count}`)
      }
    } else if (MetricState.isSummaryState(state)) {
      const f = family(name, help, "summary")
      for (const [quantile, value] of state.quantiles) {
        if (Option.isSome(value)) {
          f.lines.push(
            `${name}${labelText([...labels, ["quantile", String(quantile)]])} ${number(value.value)}`
          )
        }
      }
      f.lines.push(`${name}_sum${labelText(labels)} ${number(state.sum)}`)
      f.lines.push(`${name}_count${labelText(labels)} ${state.count}`)
    }
  }
  for (const sample of extra) {
    const name = sanitize(sample.name)
    family(name, sample.help, sample.type).lines.push(
      `${name}${labelText(Object.entries(sample.labels))} ${number(sample.value)}`
    )
  }
  const out: Array<string> = []
  for (const [name, { help, type, lines }] of [...families.entries()].sort(([a], [b]) =>
    a.localeCompare(b)
  )) {
    out.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`, ...lines)
  }
  return `${out.join("\n")}\n`
}
