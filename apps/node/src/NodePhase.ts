/**
 * Where the node is in its life: `starting` until every plugin has had its
 * start, `running`, then `stopping` from the first shutdown signal. The admin
 * API answers health with it (503 while starting or stopping).
 */
import * as Context from "effect/Context"
import * as Layer from "effect/Layer"

/** The phases of a node's life. */
export type Phase = "starting" | "running" | "stopping"

/** The node's phase and version. */
export class NodePhase extends Context.Tag("@blackhole/node/NodePhase")<
  NodePhase,
  { readonly get: () => Phase; readonly set: (phase: Phase) => void; readonly version: string }
>() {}

/** A phase that starts at `starting`. */
export const layer = (version: string): Layer.Layer<NodePhase> =>
  Layer.sync(NodePhase, () => {
    let phase: Phase = "starting"
    return {
      get: () => phase,
      set: (next) => {
        phase = next
      },
      version
    }
  })
