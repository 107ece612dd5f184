/**
 * Structural checks of @effect/rpc messages arriving on the channel, before
 * they reach @effect/rpc: a message of the wrong shape there would silently
 * end that direction's message pump (a hung plugin the heartbeat cannot see).
 * A frame that fails these checks closes the channel as invalid.
 */
const isRecord = (u: unknown): u is Record<string, unknown> =>
  typeof u === "object" && u !== null && !Array.isArray(u)
/** Request ids travel as decimal strings of a bigint. */
const isId = (u: unknown): boolean => typeof u === "string" && /^\d{1,20}$/.test(u)
const isHeaders = (u: unknown): boolean =>
  Array.isArray(u) &&
  u.every(
    (pair) =>
      Array.isArray(pair) && pair.length === 2 && typeof pair[0] === "string" && typeof pair[1] === "string"
  )

/** Why a client → server message is malformed, or undefined when it is fine. */
export const checkToServer = (body: unknown): string | undefined => {
  if (!isRecord(body)) return "not an object"
  switch (body._tag) {
    case "Request":
      if (!isId(body.id)) return "bad request id"
      if (typeof body.tag !== "string") return "bad tag"
      if (!isHeaders(body.headers)) return "bad headers"
      return undefined
    case "Ack":
    case "Interrupt":
      return isId(body.requestId) ? undefined : "bad request id"
    case "Ping":
      return undefined
    // "Eof" is the client's promise to send nothing more; the channel never ends that way (it closes),
    // and a peer's Eof would stop the server's pump mid-call.
    default:
      return `unknown message ${JSON.stringify(body._tag)}`
  }
}

/** Why a server → client message is malformed, or undefined when it is fine. */
export const checkToClient = (body: unknown): string | undefined => {
  if (!isRecord(body)) return "not an object"
  switch (body._tag) {
    case "Exit":
      if (!isId(body.requestId)) return "bad request id"
      return isRecord(body.exit) && (body.exit._tag === "Success" || body.exit._tag === "Failure")
        ? undefined
        : "bad exit"
    case "Chunk":
      if (!isId(body.requestId)) return "bad request id"
      return Array.isArray(body.values) ? undefined : "bad values"
    // A Defect fails every call pending on this channel: harm limited to this plugin's own calls, and
    // @effect/rpc sends one itself when it cannot encode a response.
    case "Defect":
    case "Pong":
    case "ClientEnd":
      return undefined
    default:
      // ClientProtocolError included: only the channel itself may raise it, never the peer.
      return `unknown message ${JSON.stringify(body._tag)}`
  }
}

/** A fast-path Call: `[id, service, method, payload]`, or `[id, service, method]` when there is no payload. */
export const isCall = (u: unknown): u is [number, string, string, unknown] =>
  Array.isArray(u) &&
  (u.length === 4 || u.length === 3) &&
  Number.isSafeInteger(u[0]) &&
  typeof u[1] === "string" &&
  typeof u[2] === "string"

/** A fast-path Reply: `[id, outcome, value]`, or `[id, 0]` for a success whose value is `undefined`. */
export const isReply = (u: unknown): u is [number, 0 | 1 | 2, unknown] =>
  Array.isArray(u) &&
  Number.isSafeInteger(u[0]) &&
  ((u.length === 3 && (u[1] === 0 || u[1] === 1 || u[1] === 2)) || (u.length === 2 && u[1] === 0))

/** A fast-path Cancel: `[id]`. */
export const isCancel = (u: unknown): u is [number] =>
  Array.isArray(u) && u.length === 1 && Number.isSafeInteger(u[0])
