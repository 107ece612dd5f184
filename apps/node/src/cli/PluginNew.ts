/**
 * `blackhole plugin new <name>`: scaffolds a typed plugin package (manifest,
 * config Schema, contract module, program, a unit test on the SDK's test kit,
 * and a build that writes config.schema.json). `@blackhole/sdk` is not
 * published, so the package depends on this checkout's SDK by `file:` path,
 * and its `node_modules/` is linked to this checkout's packages: it builds
 * and tests with no install and no network.
 */
import * as fs from "node:fs"
import * as nodePath from "node:path"
import { fileURLToPath } from "node:url"
import * as PluginManifest from "@blackhole/sdk/PluginManifest"
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as CliError from "./CliError.js"
import * as Flags from "./Flags.js"
import * as Scaffold from "./internal/scaffold.js"
import * as Output from "./Output.js"
import * as Version from "./Version.js"

/** This checkout's SDK package (from `apps/node/{src,dist}/cli/`). */
export const sdkPath = fileURLToPath(new URL("../../../../packages/sdk", import.meta.url))

/** Where Node would find `name` for code in `from`: the first `node_modules/<name>` up the tree. */
const findPackage = (name: string, from: string): string | undefined => {
  for (let dir = from; ; dir = nodePath.dirname(dir)) {
    const candidate = nodePath.join(dir, "node_modules", name)
    if (fs.existsSync(nodePath.join(candidate, "package.json"))) return candidate
    if (nodePath.dirname(dir) === dir) return undefined
  }
}

const versionOf = (directory: string): string | undefined => {
  try {
    const version: unknown = JSON.parse(
      fs.readFileSync(nodePath.join(directory, "package.json"), "utf8")
    ).version
    return typeof version === "string" ? version : undefined
  } catch {
    return undefined
  }
}

// What `npm install` would want if a package is not in this checkout (its own root package.json's ranges).
const fallbackRanges: Readonly<Record<(typeof Scaffold.dependencyNames)[number], string>> = {
  effect: "~3.22.4",
  "@effect/platform": "^0.97.2",
  "@effect/rpc": "^0.76.2",
  "@effect/vitest": "^0.30.0",
  "@types/node": "^20.19.43",
  typescript: "^7.0.2",
  vitest: "^3.2.7"
}

const NAME = /^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$/

/** Creates the package; returns the packages it could not link. */
export const scaffold = (options: {
  readonly name: string
  readonly directory: string
  readonly id?: string
  readonly link: boolean
}): Effect.Effect<{ readonly unlinked: ReadonlyArray<string>; readonly id: string }, CliError.CliError> =>
  Effect.gen(function* () {
    const { name, directory } = options
    if (!NAME.test(name) || name.length > 40) {
      return yield* CliError.usage(
        `"${name}" cannot name a plugin: use lowercase letters and digits, words joined by single hyphens, starting with a letter (e.g. hello-world; at most 40 characters)`
      )
    }
    if (options.id !== undefined) {
      const checked = Schema.decodeUnknownEither(PluginManifest.PluginId)(options.id)
      if (Either.isLeft(checked)) {
        return yield* CliError.usage(
          `--id "${options.id}" is not a plugin id: reverse-DNS like com.example.${name} (lowercase labels joined by dots)`
        )
      }
    }
    if (!fs.existsSync(nodePath.join(sdkPath, "package.json"))) {
      return yield* CliError.failure(`cannot find this checkout's SDK at ${sdkPath}`)
    }
    const existing = fs.statSync(directory, { throwIfNoEntry: false })
    if (existing !== undefined && (!existing.isDirectory() || fs.readdirSync(directory).length > 0)) {
      return yield* CliError.failure(`${directory} already exists and is not an empty directory`)
    }

    const located = new Map<string, string>()
    const versions: Record<string, string> = {}
    for (const dependency of Scaffold.dependencyNames) {
      const found = findPackage(dependency, sdkPath)
      const version = found === undefined ? undefined : versionOf(found)
      if (found !== undefined) located.set(dependency, found)
      versions[dependency] =
        version === undefined
          ? fallbackRanges[dependency]
          : `${dependency === "effect" ? "~" : "^"}${version}`
    }
    const names = Scaffold.namesOf(name, {
      ...(options.id === undefined ? {} : { id: options.id }),
      nodeVersion: yield* Version.node,
      sdkPath,
      versions
    })

    const unlinked = yield* Effect.try({
      try: () => {
        for (const [file, contents] of Scaffold.files(names)) {
          const target = nodePath.join(directory, file)
          fs.mkdirSync(nodePath.dirname(target), { recursive: true })
          fs.writeFileSync(target, contents)
        }
        if (!options.link) return []
        const modules = nodePath.join(directory, "node_modules")
        const link = (name: string, to: string) => {
          const at = nodePath.join(modules, name)
          fs.mkdirSync(nodePath.dirname(at), { recursive: true })
          fs.symlinkSync(to, at, "dir")
        }
        link("@blackhole/sdk", sdkPath)
        const missing: Array<string> = []
        for (const dependency of Scaffold.dependencyNames) {
          const found = located.get(dependency)
          if (found === undefined) missing.push(dependency)
          else link(dependency, found)
        }
        // `npm run` puts node_modules/.bin on the PATH.
        const bin = nodePath.join(modules, ".bin")
        fs.mkdirSync(bin, { recursive: true })
        const tsc = located.get("typescript")
        const vitest = located.get("vitest")
        if (tsc !== undefined) fs.symlinkSync(nodePath.join(tsc, "bin", "tsc"), nodePath.join(bin, "tsc"))
        if (vitest !== undefined)
          fs.symlinkSync(nodePath.join(vitest, "vitest.mjs"), nodePath.join(bin, "vitest"))
        return missing
      },
      catch: (error) =>
        CliError.failure(
          `cannot write ${directory}: ${error instanceof Error ? error.message : String(error)}`
        )
    })
    return { unlinked, id: names.id }
  })

/** `blackhole plugin new <name> [--directory D] [--id ID] [--no-link]` */
export const command = Command.make(
  "new",
  {
    ...Flags.localOptions,
    directory: Options.text("directory").pipe(
      Options.withAlias("d"),
      Options.withPseudoName("DIR"),
      Options.withDescription("Where to create the package (default: ./<name>); must not exist or be empty."),
      Options.optional
    ),
    id: Options.text("id").pipe(
      Options.withPseudoName("ID"),
      Options.withDescription("The plugin id (default: dev.local.<name>)."),
      Options.optional
    ),
    noLink: Options.boolean("no-link").pipe(
      Options.withDescription(
        "Do not link node_modules/ to this checkout's packages (run `npm install` in the package instead)."
      )
    ),
    name: Args.text({ name: "name" }).pipe(
      Args.withDescription("The plugin's name: also its service name and event prefix, e.g. hello-world.")
    )
  },
  (flags) =>
    Effect.gen(function* () {
      const directory = nodePath.resolve(Option.getOrElse(flags.directory, () => flags.name))
      const { id, unlinked } = yield* scaffold({
        name: flags.name,
        directory,
        ...(Option.isSome(flags.id) ? { id: flags.id.value } : {}),
        link: !flags.noLink
      })
      const p = Output.out()
      const relative = nodePath.relative(process.cwd(), directory)
      const shown = relative === "" ? "." : relative.startsWith("..") ? directory : relative
      for (const missing of unlinked) {
        yield* Output.warning(`${missing} is not installed in this checkout: run \`npm install\` in ${shown}`)
      }
      yield* Output.line(
        [
          `${p.green("created")} plugin ${p.bold(id)} in ${shown}`,
          "",
          `  cd ${shown}`,
          `  npm run build                     ${p.dim("# compile, write config.schema.json")}`,
          `  npm test                          ${p.dim("# unit tests on the in-memory test kit")}`,
          `  blackhole plugin validate .       ${p.dim("# check it as the node will")}`,
          "",
          `See ${nodePath.join(shown, "README.md")} to run it on a node.`
        ].join("\n")
      )
    })
).pipe(
  Command.withDescription("Create a typed plugin package that builds and tests against this checkout's SDK.")
)
