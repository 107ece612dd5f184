import * as Schema from "effect/Schema"

/**
 * Why a P2P operation failed. A Schema.TaggedError because the `p2p` core service is reachable
 * over the mesh and the HTTP API, where errors travel encoded as `{ _tag, reason, message }`.
 * Public as `P2P.P2PError`; it lives here so the internal modules need not import `P2P.ts`.
 */
export class P2PError extends Schema.TaggedError<P2PError>()("P2PError", {
  reason: Schema.Literal(
    /** The layer's config is unusable (e.g. a non-positive `maxMessageBytes`). */
    "InvalidConfig",
    /** A string that is not a multiaddr (or one the transport cannot use). */
    "InvalidAddress",
    /** A string that is not a libp2p PeerId. */
    "InvalidPeerId",
    /** A protocol name, version or id that does not fit `/blackhole/<name>/<version>`. */
    "InvalidProtocol",
    /** The protocol is already registered on this node. */
    "ProtocolTaken",
    /** The message exceeds `maxMessageBytes`. */
    "MessageTooLarge",
    /** The libp2p node could not be created or started (e.g. the listen address is in use). */
    "StartFailed",
    "DialFailed",
    "HangUpFailed",
    /** The stream could not be opened (peer unreachable, protocol not supported) or written. */
    "SendFailed"
  ),
  /** What went wrong, for people: names the address, peer or protocol concerned. */
  message: Schema.String
}) {}

/** The message of whatever a libp2p promise rejected with. @internal */
export const describe = (cause: unknown): string =>
  cause instanceof Error
    ? `${cause.name === "Error" ? "" : `${cause.name}: `}${cause.message}`
    : String(cause)
