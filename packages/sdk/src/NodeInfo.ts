/** What a plugin may know about the node hosting it. */
import * as Context from "effect/Context"
import * as Schema from "effect/Schema"

/** The node's run mode. */
export const Environment = Schema.Literal("development", "production", "test")
/** @see Environment */
export type Environment = typeof Environment.Type

/** Context service: the hosting node's id, version and environment. */
export class NodeInfo extends Context.Tag("@blackhole/sdk/NodeInfo")<
  NodeInfo,
  {
    /** The node's libp2p PeerId string. */
    readonly nodeId: string
    /** The node's semver version (compared with manifest `compatibility`). */
    readonly version: string
    readonly environment: Environment
    /**
     * This plugin's own writable directory (`<data>/plugin-data/<id>/`, created by the node), in
     * process or in a subprocess alike; absent on a node without a data directory (in-memory tests).
     */
    readonly dataDirectory?: string
  }
>() {}
