/**
 * A whole node in memory, for tests: memory storage, a deterministic
 * identity, the real event bus, hooks, mesh and plugin manager.
 */
import * as Layer from "effect/Layer"
import * as BlackholeNode from "./BlackholeNode.js"
import * as Identity from "./Identity.js"
import * as StorageBackend from "./StorageBackend.js"

/**
 * A node in memory with `config` (environment `test`). With `p2p: { transport: "memory" }` several
 * test nodes in one process form a P2P network; a P2P start failure is a defect here.
 */
export const layer = (
  config: BlackholeNode.NodeConfig = {},
  options: { readonly seed?: Uint8Array } = {}
): Layer.Layer<BlackholeNode.NodeServices> =>
  BlackholeNode.layerWith({ environment: "test", ...config }).pipe(
    Layer.provideMerge(
      Layer.mergeAll(
        Identity.layerMemory(options.seed === undefined ? {} : { seed: options.seed }),
        StorageBackend.layerMemory
      )
    ),
    Layer.orDie
  )
