// Writes config.schema.json from the built config Schema (`npm run schema` builds first and formats after).
import { writeFileSync } from "node:fs"
import * as PluginConfig from "@blackhole/sdk/PluginConfig"
import definition from "../dist/index.js"

const file = new URL("../config.schema.json", import.meta.url)
writeFileSync(file, `${JSON.stringify(PluginConfig.toJsonSchema(definition.config), null, 2)}\n`)
console.log(`wrote ${file.pathname}`)
