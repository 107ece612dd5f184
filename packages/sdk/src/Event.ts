/**
 * The event envelope carried by the node's bus. `source` is stamped by the host
 * (the publishing plugin's id, or `core`): a plugin cannot choose it.
 */
import * as Schema from "effect/Schema"

/** An event on the bus; `data` is any JSON value. */
export class Event extends Schema.Class<Event>("@blackhole/sdk/Event")({
  /** Unique per node; lets subscribers de-duplicate. */
  id: Schema.String,
  /** Dotted type, e.g. `content.created`. */
  type: Schema.String,
  /** Who published it: a plugin id or `core`. Set by the host. */
  source: Schema.String,
  /** Milliseconds since the epoch, host clock. */
  timestamp: Schema.Number,
  data: Schema.Unknown
}) {}
