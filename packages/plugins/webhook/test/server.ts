/** A real HTTP server on 127.0.0.1 (port 0) that the webhook posts to, scripted per request. */
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as net from "node:net"
import * as Effect from "effect/Effect"

/** A request as the server received it. */
export interface Received {
  readonly method: string
  readonly url: string
  readonly headers: http.IncomingHttpHeaders
  readonly body: string
}

/** The answer to the nth request (1-based): a status, or `hang` to keep it waiting until `release`. */
export type Behaviour = (n: number, request: Received) => number | "hang"

/** The server, as a test sees it. */
export interface TestServer {
  /** Where to post: `http://127.0.0.1:<port>/hook`. */
  readonly url: string
  /** Every request so far, in order. */
  readonly received: ReadonlyArray<Received>
  /** Changes the answers from the next request on. */
  readonly answer: (behaviour: Behaviour) => void
  /** Answers every request kept waiting with `status`. */
  readonly release: (status?: number) => void
}

/** Fails the first `n` requests with `status`, then accepts. */
export const failFirst =
  (n: number, status = 503): Behaviour =>
  (count) =>
    count <= n ? status : 200

/** The server for the life of the Scope; closing it also cuts open and waiting connections. */
export const make = (behaviour: Behaviour) =>
  Effect.acquireRelease(
    Effect.async<{ readonly server: http.Server; readonly handle: TestServer }>((resume) => {
      const received: Array<Received> = []
      const waiting: Array<http.ServerResponse> = []
      let current = behaviour
      const server = http.createServer((request, response) => {
        const chunks: Array<Buffer> = []
        request.on("data", (chunk: Buffer) => chunks.push(chunk))
        request.on("end", () => {
          const entry: Received = {
            method: request.method ?? "",
            url: request.url ?? "",
            headers: request.headers,
            body: Buffer.concat(chunks).toString("utf8")
          }
          received.push(entry)
          const answer = current(received.length, entry)
          if (answer === "hang") waiting.push(response)
          else response.writeHead(answer, { "content-type": "text/plain" }).end(answer < 300 ? "ok" : "no")
        })
      })
      server.once("error", (error) => resume(Effect.die(error)))
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(
          Effect.succeed({
            server,
            handle: {
              url: `http://127.0.0.1:${port}/hook`,
              received,
              answer: (next) => {
                current = next
              },
              release: (status = 200) => {
                for (const response of waiting.splice(0)) response.writeHead(status).end()
              }
            }
          })
        )
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ handle }) => handle))

/** The events the server received, parsed from the JSON bodies. */
export const bodies = (
  server: TestServer
): Array<{
  readonly id: string
  readonly type: string
  readonly source: string
  readonly timestamp: number
  readonly data: unknown
}> => server.received.map((request) => JSON.parse(request.body))

/** Polls `probe` until it yields a value (bounded: 10 s of real time). */
export const eventually = <A, E, R>(probe: Effect.Effect<A | undefined, E, R>, what: string) =>
  Effect.gen(function* () {
    for (let i = 0; i < 500; i++) {
      const value = yield* probe
      if (value !== undefined) return value
      yield* Effect.sleep("20 millis")
    }
    return yield* Effect.dieMessage(`not reached within 10 s: ${what}`)
  })

/** A loopback port nothing listens on: bound, then released (fetch refuses well-known ones like 1). */
export const closedPort = Effect.async<number>((resume) => {
  const probe = net.createServer()
  probe.once("error", (error) => resume(Effect.die(error)))
  probe.listen(0, "127.0.0.1", () => {
    const { port } = probe.address() as AddressInfo
    probe.close(() => resume(Effect.succeed(port)))
  })
})
