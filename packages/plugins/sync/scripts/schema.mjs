// Writes config.schema.json from the built plugin's config Schema (run `npm run build` first).
import { writeFileSync } from "node:fs"
import * as PluginConfig from "@blackhole/sdk/PluginConfig"
import definition from "../dist/index.js"

const target = new URL("../config.schema.json", import.meta.url)
writeFileSync(target, `${JSON.stringify(PluginConfig.toJsonSchema(definition.config), null, 2)}\n`)
console.log(`wrote ${target.pathname}`)
