/**
 * Optional OpenTelemetry tracing through @effect/opentelemetry, configured by
 * the standard `OTEL_*` variables. Off unless `OTEL_TRACES_EXPORTER` names an
 * exporter or an OTLP endpoint is set; when off, nothing is loaded and spans
 * go to Effect's no-op tracer, so it costs nothing.
 */
import * as MeshTracing from "@blackhole/core/MeshTracing"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Config from "./Config.js"

/** Whether the environment asks for traces, and where they go. */
export const exporterOf = (
  env: Readonly<Record<string, string | undefined>>
): "otlp" | "console" | undefined => {
  const exporter = env.OTEL_TRACES_EXPORTER?.trim().toLowerCase()
  if (exporter === "none" || env.OTEL_SDK_DISABLED === "true") return undefined
  if (exporter === "console") return "console"
  if (exporter === "otlp") return "otlp"
  return env.OTEL_EXPORTER_OTLP_ENDPOINT !== undefined || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT !== undefined
    ? "otlp"
    : undefined
}

/** The tracer for this node: OTLP over HTTP (endpoint, headers from `OTEL_*`), console, or none. */
export const layer = (
  config: Config.Config,
  env: Readonly<Record<string, string | undefined>> = process.env
): Layer.Layer<never> => {
  const exporter = exporterOf(env)
  if (exporter === undefined) return Layer.empty
  return Layer.unwrapEffect(
    Effect.promise(async () => {
      MeshTracing.enable()
      // Loaded only when tracing is on: these modules are large.
      const [NodeSdk, base, otlp] = await Promise.all([
        import("@effect/opentelemetry/NodeSdk"),
        import("@opentelemetry/sdk-trace-base"),
        import("@opentelemetry/exporter-trace-otlp-http")
      ])
      const spanExporter =
        exporter === "console" ? new base.ConsoleSpanExporter() : new otlp.OTLPTraceExporter()
      return NodeSdk.layer(() => ({
        resource: {
          serviceName: env.OTEL_SERVICE_NAME ?? "blackhole-node",
          attributes: { "deployment.environment": config.node.environment }
        },
        spanProcessor: new base.BatchSpanProcessor(spanExporter)
      })).pipe(Layer.tap(() => Effect.logInfo(`tracing on: ${exporter} exporter`)))
    })
  ).pipe(Layer.discard) as Layer.Layer<never>
}
