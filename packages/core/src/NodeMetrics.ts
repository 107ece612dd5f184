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

/** Records one finished mesh call; label arrays are cached per (plugin, operation, status). */
export const recordCall = (() => {
  const labels = new Map<string, ReadonlyArray<MetricLabel.MetricLabel>>()
  const serviceLabels = new Map<string, ReadonlyArray<MetricLabel.MetricLabel>>()
  return (plugin: string, service: string, method: string, status: string, seconds: number): void => {
    const key = `${plugin}\u0000${service}.${method}\u0000${status}`
    let set = labels.get(key)
    if (set === undefined) {
      set = [
        MetricLabel.make("plugin", plugin),
        MetricLabel.make("operation", `${service}.${method}`),
        MetricLabel.make("status", status)
      ]
      // Bounded: an unknown method is refused before it gets here, so keys are the contracts' methods.
      labels.set(key, set)
    }
    pluginOperations.unsafeUpdate(1, set)
    let byService = serviceLabels.get(service)
    if (byService === undefined) {
      byService = [MetricLabel.make("service", service)]
      serviceLabels.set(service, byService)
    }
    callDuration.unsafeUpdate(seconds, byService)
  }
})()
