// Moleculer 0.15 for the peer comparison, confined to loopback. Its TCP transporter has no
// option for the listen address (it binds every interface) and connects to the addresses peers
// announce (hostname or first IP): this subclass listens on 127.0.0.1 only and always connects to
// 127.0.0.1. Everything else is the stock TCP transporter (same framing, serializer, gossip).

import { createRequire } from "node:module"
import * as net from "node:net"
import * as path from "node:path"

const require = createRequire(import.meta.url)
const moleculerDir = path.dirname(require.resolve("moleculer"))
export const moleculer = require("moleculer")
export const moleculerVersion = require(path.join(moleculerDir, "package.json")).version
const TcpReader = require(path.join(moleculerDir, "src", "transporters", "tcp", "tcp-reader.js"))
const TcpWriter = require(path.join(moleculerDir, "src", "transporters", "tcp", "tcp-writer.js"))

export const LOOPBACK = "127.0.0.1"

class LoopbackTcpReader extends TcpReader {
  listen() {
    return new Promise((resolve, reject) => {
      const server = net.createServer((socket) => this.onTcpClientConnected(socket))
      server.on("error", reject)
      server.listen({ host: LOOPBACK, port: this.opts.port, exclusive: true }, () => {
        this.opts.port = server.address().port
        this.connected = true
        resolve(this.opts.port)
      })
      this.server = server
    })
  }
}

class LoopbackTcpTransporter extends moleculer.Transporters.TCP {
  /** The stock startTcpServer (moleculer 0.15.2, src/transporters/tcp.js) with the loopback reader. */
  startTcpServer() {
    this.writer = new TcpWriter(this, this.opts)
    this.reader = new LoopbackTcpReader(this, this.opts)
    this.writer.on("error", (_error, nodeID) => this.nodes.disconnected(nodeID, false))
    this.writer.on("end", (nodeID) => this.nodes.disconnected(nodeID, false))
    return this.reader.listen()
  }

  getNodeAddress() {
    return LOOPBACK
  }
}

/** A free loopback TCP port (bound and released). */
export const freePort = () =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.on("error", reject)
    server.listen({ host: LOOPBACK, port: 0 }, () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })

/**
 * A broker on the TCP transporter, loopback only: `udpDiscovery: false`, its own `port`, the
 * peers as static 127.0.0.1 URLs, gossip every second. Warnings and errors go to stderr (console.warn/error).
 */
export const makeBroker = ({ nodeID, port, peers }) =>
  new moleculer.ServiceBroker({
    nodeID,
    namespace: "blackhole-bench",
    logger: { type: "Console", options: { level: "warn" } },
    transporter: new LoopbackTcpTransporter({
      udpDiscovery: false,
      // Discovery only (the smallest period: peers find each other sooner); calls are unaffected.
      gossipPeriod: 1,
      port,
      urls: peers.map(({ nodeID: peer, port: peerPort }) => `${LOOPBACK}:${peerPort}/${peer}`)
    })
  })
