/**
 * `blackhole plugin validate <dir>`: checks a plugin directory as the node
 * would before running any of its code: `plugin.json` against the manifest
 * schema, and a config against the plugin's `config.schema.json`. Every
 * problem is printed with its path. Exit 0 when valid, 1 when not; what the
 * node would only warn about (version compatibility, `main` not built yet)
 * is a warning.
 */
import * as fs from "node:fs"
import * as nodePath from "node:path"
import * as ConfigSchemaFile from "@blackhole/core/ConfigSchemaFile"
import * as PluginManifest from "@blackhole/sdk/PluginManifest"
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as YAML from "yaml"
import * as CliError from "./CliError.js"
import * as Flags from "./Flags.js"
import * as Output from "./Output.js"
import * as Version from "./Version.js"

/** One finding: which file or input, the path inside it, and what is wrong. */
export interface Finding {
  readonly source: string
  readonly path: string
  readonly message: string
}

/** The whole result, also the `--json` output. */
export interface Report {
  readonly directory: string
  readonly valid: boolean
  readonly plugin: {
    readonly id: string
    readonly name: string
    readonly version: string
    readonly type: string
  } | null
  readonly errors: ReadonlyArray<Finding>
  readonly warnings: ReadonlyArray<Finding>
}

/** A config to check, and how to name where it came from. */
interface ConfigInput {
  readonly source: string
  readonly value: unknown
}

const readConfigFile = (file: string): Effect.Effect<unknown, CliError.CliError> =>
  Effect.try({
    try: () => {
      const text = fs.readFileSync(file, "utf8")
      // JSON is YAML too, but JSON's own parser gives the better message for a .json file.
      return nodePath.extname(file).toLowerCase() === ".json" ? JSON.parse(text) : YAML.parse(text)
    },
    catch: (error) =>
      CliError.failure(
        `cannot read the plugin config ${file}: ${error instanceof Error ? error.message : String(error)}`
      )
  })

/** The config given on the command line, or the node config's override for this plugin, if any. */
const configInput = (
  flags: {
    readonly configFile: Option.Option<string>
    readonly pluginConfig: Option.Option<string>
    readonly config: Option.Option<string>
    readonly dataDir: Option.Option<string>
  },
  pluginId: string
): Effect.Effect<ConfigInput | undefined, CliError.CliError> =>
  Effect.gen(function* () {
    if (Option.isSome(flags.pluginConfig)) {
      const text = flags.pluginConfig.value
      const value = yield* Effect.try({
        try: (): unknown => JSON.parse(text),
        catch: (error) =>
          CliError.usage(
            `--plugin-config is not JSON (${error instanceof Error ? error.message : String(error)})`
          )
      })
      return { source: "config (--plugin-config)", value }
    }
    if (Option.isSome(flags.configFile)) {
      const file = nodePath.resolve(flags.configFile.value)
      return { source: `config (${file})`, value: yield* readConfigFile(file) }
    }
    const node = yield* Flags.loadConfig(flags)
    const override = node.plugins.overrides[pluginId]
    if (override?.config === undefined) return undefined
    return {
      source: `config (plugins.overrides."${pluginId}".config in ${node.sources.join(" + ")})`,
      value: override.config
    }
  })

/** Validates the plugin in `directory`; fails only on a usage or read error, never on what it finds. */
export const validate = (
  directory: string,
  flags: Parameters<typeof configInput>[0]
): Effect.Effect<Report, CliError.CliError> =>
  Effect.gen(function* () {
    const errors: Array<Finding> = []
    const warnings: Array<Finding> = []
    const report = (plugin: Report["plugin"]): Report => ({
      directory,
      valid: errors.length === 0,
      plugin,
      errors,
      warnings
    })
    if (Option.isSome(flags.configFile) && Option.isSome(flags.pluginConfig)) {
      return yield* CliError.usage("give either --config-file or --plugin-config, not both")
    }
    if (!fs.statSync(directory, { throwIfNoEntry: false })?.isDirectory()) {
      return yield* CliError.failure(`${directory} is not a directory`)
    }
    const manifestFile = nodePath.join(directory, "plugin.json")
    let text: string
    try {
      text = fs.readFileSync(manifestFile, "utf8")
    } catch (error) {
      errors.push({
        source: "plugin.json",
        path: "",
        message: `cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)}): a plugin directory needs a plugin.json`
      })
      return report(null)
    }
    const decoded = yield* Effect.either(PluginManifest.decodeJson(text, manifestFile))
    if (Either.isLeft(decoded)) {
      for (const issue of decoded.left.issues) errors.push({ source: "plugin.json", ...issue })
      return report(null)
    }
    const manifest = decoded.right
    const plugin = { id: manifest.id, name: manifest.name, version: manifest.version, type: manifest.type }

    const nodeVersion = yield* Version.node
    if (!PluginManifest.isCompatible(manifest, nodeVersion)) {
      const range = manifest.compatibility
      warnings.push({
        source: "plugin.json",
        path: "compatibility",
        message: `this node is version ${nodeVersion}, outside the plugin's ${range?.minVersion} – ${range?.maxVersion}: this node will refuse to load it`
      })
    }
    if (!fs.existsSync(nodePath.resolve(directory, manifest.main))) {
      warnings.push({
        source: "plugin.json",
        path: "main",
        message: `${manifest.main} does not exist (not built yet? run the plugin's build)`
      })
    }

    const input = yield* configInput(flags, manifest.id)
    const schemaRef = manifest.configuration?.$schema
    if (schemaRef === undefined) {
      if (input !== undefined) {
        warnings.push({
          source: input.source,
          path: "",
          message:
            "not checked: plugin.json names no configuration.$schema (the plugin still decodes it when it starts)"
        })
      }
      return report(plugin)
    }
    if (input === undefined && !fs.existsSync(nodePath.resolve(directory, schemaRef))) {
      warnings.push({
        source: "plugin.json",
        path: "configuration.$schema",
        message: `${schemaRef} does not exist (not built yet? the plugin's build writes it)`
      })
      return report(plugin)
    }
    // No config given means the node would start the plugin with `{}`: check that, like the host does.
    const checked = input ?? { source: "config (none given: the defaults)", value: {} }
    const outcome = yield* Effect.either(ConfigSchemaFile.validate(directory, manifest, checked.value))
    if (Either.isLeft(outcome)) {
      for (const issue of outcome.left.issues) errors.push({ source: checked.source, ...issue })
    }
    return report(plugin)
  })

const where = (finding: Finding) => `${finding.source}${finding.path === "" ? "" : ` ${finding.path}`}`

/** The report for people: the plugin, each warning and error with its path, and a verdict. */
const print = (report: Report): Effect.Effect<void> =>
  Effect.gen(function* () {
    const p = Output.out()
    const plugin = report.plugin
    yield* Output.line(
      plugin === null
        ? `plugin in ${report.directory}`
        : `${p.bold(plugin.id)} ${plugin.version} (${plugin.type}) in ${report.directory}`
    )
    for (const finding of report.warnings) {
      yield* Output.line(`  ${p.yellow("warning")}  ${where(finding)}: ${finding.message}`)
    }
    for (const finding of report.errors) {
      yield* Output.line(`  ${p.red("error")}    ${where(finding)}: ${finding.message}`)
    }
    const count = (n: number, noun: string) => `${n} ${noun}${n === 1 ? "" : "s"}`
    const tally = report.warnings.length === 0 ? "" : ` (${count(report.warnings.length, "warning")})`
    yield* Output.line(
      report.valid
        ? `${p.green("✓ valid")}${tally}`
        : `${p.red("✗ invalid")}: ${count(report.errors.length, "error")}${report.warnings.length === 0 ? "" : `, ${count(report.warnings.length, "warning")}`}`
    )
  })

/** `blackhole plugin validate <dir> [--config-file F | --plugin-config JSON] [--json]` */
export const command = Command.make(
  "validate",
  {
    ...Flags.localOptions,
    json: Flags.json,
    configFile: Options.text("config-file").pipe(
      Options.withPseudoName("FILE"),
      Options.withDescription(
        "A plugin config to check against its config.schema.json (.json, .yaml or .yml)."
      ),
      Options.optional
    ),
    pluginConfig: Options.text("plugin-config").pipe(
      Options.withPseudoName("JSON"),
      Options.withDescription(
        "A plugin config as JSON to check (default: plugins.overrides.<id>.config of the node config, else {})."
      ),
      Options.optional
    ),
    directory: Args.text({ name: "dir" }).pipe(
      Args.withDescription("The plugin directory (with plugin.json).")
    )
  },
  (own) =>
    Effect.gen(function* () {
      const flags = yield* Flags.inherit(own)
      const report = yield* validate(nodePath.resolve(flags.directory), flags)
      yield* flags.json ? Output.json(report) : print(report)
      if (!report.valid) return yield* CliError.failure("")
    })
).pipe(
  Command.withDescription(
    "Check a plugin directory's plugin.json and config; print every problem with its path."
  )
)
