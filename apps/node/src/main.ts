#!/usr/bin/env node
/** The `blackhole` executable. With no arguments it starts the node (what `npm start` runs). */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cli from "./Cli.js"

NodeRuntime.runMain(Cli.run(process.argv), { disableErrorReporting: true, teardown: Cli.teardown })
