/** Entry point of a plugin process; the host runs `node <this file>`. */
import { runMain } from "./PluginRuntime.js"

runMain()
