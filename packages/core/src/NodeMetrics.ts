/**
 * The node's metrics, in Effect's Metric registry (the admin API renders them
 * as Prometheus text). Hot paths update them with pre-built label sets, so a
 * mesh call pays a map lookup and an add, not a fiber.
 */
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricLabel from "effect/MetricLabel"

/** Mesh calls served, by the plugin that serves them (`core` for core services), operation and outcome. */
export const pluginOperations = Metric.counter("plugin_operations_total", {
  description:
    "Mesh calls served, by serving plugin, operation (service.method) and status (ok or error tag)",
  incremental: true
})

/** Mesh call latency as the caller sees it, by service. */
export const callDuration = Metric.histogram(
  "mesh_call_duration_seconds",
  MetricBoundaries.exponential({ start: 0.00005, factor: 2, count: 18 }),
  "Latency of mesh calls, from the registry's view, by service"
)

/** Restarts by the supervisor, by plugin. */
export const pluginRestarts = Metric.counter("plugin_restarts_total", {
  description: "Restarts of plugins by the supervisor, by plugin",
  incremental: true
})

/** Records the outcome and duration of one finished mesh call to one operation. */
export type CallRecorder = (status: string, seconds: number) => void

/**
 * The recorder of one operation (plugin, service, method), with its label sets built once: a call
 * pays a map lookup by status and two metric updates. Keep one per operation, not per call.
 */
export const callRecorder = (plugin: string, service: string, method: string): CallRecorder => {
  const operation = MetricLabel.make("operation", `${service}.${method}`)
  const byPlugin = MetricLabel.make("plugin", plugin)
  const byService = [MetricLabel.make("service", service)]
  // Bounded: statuses are "ok", "interrupted", "defect" and the error tags of the contract.
  const byStatus = new Map<string, ReadonlyArray<MetricLabel.MetricLabel>>()
  return (status, seconds) => {
    let labels = byStatus.get(status)
    if (labels === undefined) {
      labels = [byPlugin, operation, MetricLabel.make("status", status)]
      byStatus.set(status, labels)
    }
    pluginOperations.unsafeUpdate(1, labels)
    callDuration.unsafeUpdate(seconds, byService)
  }
}
