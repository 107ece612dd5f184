/**
 * The subprocess loader: runs a plugin in its own Node.js process, connected
 * by one framed channel on an extra stdio pipe (never Node's IPC channel, which
 * a hostile child can use to crash the host). The host serves the plugin's
 * context services from the plugin's sandbox, routes mesh calls to it as
 * encoded frames (it never imports the plugin's code), watches it with a
 * heartbeat and resource sampling, and stops it with Stop → SIGTERM → SIGKILL.
 */

import type { PluginManifest } from "@blackhole/sdk/PluginManifest"
import * as internal from "./internal/subprocess.js"
import type { PluginLoader } from "./PluginLoader.js"
import type { LastExit } from "./PluginManager.js"

/** Everything about how a plugin process is run; each has a default. */
export interface SubprocessOptions {
  /** The plugin's directory (holds plugin.json); its `main` is resolved against it. */
  readonly directory: string
  readonly manifest: PluginManifest
  /** The plugin's own writable directory (`<data>/plugin-data/<id>/`); created if missing. */
  readonly dataDirectory?: string
  /** Hard cap on one frame of the channel. Default 4 MiB. */
  readonly maxFrameBytes?: number
  /** How often the host sends a heartbeat. Default 1 s. */
  readonly heartbeatIntervalMillis?: number
  /** A plugin that has not answered a heartbeat for this long is killed as hung. Default 3 s. */
  readonly heartbeatDeadlineMillis?: number
  /** From fork to handshake and started program. Default 15 s. */
  readonly startTimeoutMillis?: number
  /** Upper bound of one mesh call to the plugin; then the caller gets PluginUnavailable and the call is cancelled. Default 30 s. */
  readonly callTimeoutMillis?: number
  /** Stop call → SIGTERM → this grace → SIGKILL. Default 5 s. */
  readonly stopGraceMillis?: number
  /** How often memory and sockets are sampled. Default 500 ms. */
  readonly sampleIntervalMillis?: number
  /** Lines per second of plugin output passed to the host log; more are counted and dropped. Default 200. */
  readonly logLinesPerSecond?: number
  /**
   * Process-level restrictions. `permission` (default): Node's permission model — reads limited to the
   * plugin's directory and the runtime's libraries, writes to its data directory and granted
   * `fs:write:<path>`s, no child processes, workers, addons or inspector. A seat belt, not a security
   * boundary (see docs/sandbox.md). `none`: no restrictions (debugging).
   */
  readonly sandbox?: "permission" | "none"
  /**
   * OS-level isolation, opt-in, on top of the sandbox: `uid` runs the process as `runAs` (the host
   * must be root); `bubblewrap` runs it under bwrap with only the plugin's directory, the runtime's
   * libraries and its data directory mounted, and no network unless a `network:*` permission was
   * granted. Default `none`.
   */
  readonly isolation?: "none" | "uid" | "bubblewrap"
  /** The user and group for `isolation: "uid"`. Default 65534/65534 (nobody/nogroup). */
  readonly runAs?: { readonly uid: number; readonly gid: number }
  /** Extra node flags for the child (the host's own execArgv are never inherited). */
  readonly execArgv?: ReadonlyArray<string>
}

/** How a plugin process ended. */
export type { LastExit }

/**
 * The V8 flags the loader starts a plugin's process with (its heap cap, from `resources.maxMemory`).
 * V8 accepts a code cache only under the flags it was made with: a bundle's cache is made with these.
 */
export const v8Flags: (manifest: PluginManifest) => ReadonlyArray<string> = internal.v8Flags

/** A loader that runs the plugin in a supervised child process. */
export const make: (options: SubprocessOptions) => PluginLoader = internal.make
