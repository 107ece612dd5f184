/**
 * What the CLI prints: colours only on a terminal (and never with `NO_COLOR`),
 * aligned tables, key/value listings, and the small formatters they use.
 * Everything goes through Effect's Console, so @effect/cli's own help and
 * errors obey the same colour policy (see {@link withColourPolicy}).
 */
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"

/** Whether `stream` should get ANSI colours: a TTY, not `TERM=dumb`, no `NO_COLOR`; `FORCE_COLOR` wins. */
export const coloursOn = (stream: { readonly isTTY?: boolean }): boolean => {
  const env = process.env
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== "") return false
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== "" && env.FORCE_COLOR !== "0") return true
  return stream.isTTY === true && env.TERM !== "dumb"
}

/** Whether standard output is a terminal (pretty JSON, progress display). */
export const isInteractive = (): boolean => process.stdout.isTTY === true

// biome-ignore lint/suspicious/noControlCharactersInRegex: matching ANSI escape sequences is the point
const ANSI = /\u001b\[[0-9;]*m/g

/** The text without ANSI colour sequences. */
export const stripAnsi = (text: string): string => text.replace(ANSI, "")

/** Visible width (colour sequences take no room). */
const width = (text: string): number => stripAnsi(text).length

const sgr = (open: number, close: number) => (on: boolean) => (text: string) =>
  on ? `\u001b[${open}m${text}\u001b[${close}m` : text

/** Colour functions bound to one stream's policy. */
export interface Palette {
  readonly bold: (text: string) => string
  readonly dim: (text: string) => string
  readonly red: (text: string) => string
  readonly green: (text: string) => string
  readonly yellow: (text: string) => string
  readonly cyan: (text: string) => string
}

const palette = (on: boolean): Palette => ({
  bold: sgr(1, 22)(on),
  dim: sgr(2, 22)(on),
  red: sgr(31, 39)(on),
  green: sgr(32, 39)(on),
  yellow: sgr(33, 39)(on),
  cyan: sgr(36, 39)(on)
})

/** Colours for standard output. */
export const out = (): Palette => palette(coloursOn(process.stdout))
/** Colours for standard error. */
export const err = (): Palette => palette(coloursOn(process.stderr))

/**
 * Runs `effect` with a Console that drops colour sequences from whatever
 * goes to a stream that should not get them (@effect/cli colours its help
 * and parse errors unconditionally).
 */
export const withColourPolicy = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.consoleWith((base) => {
    const plainOut = !coloursOn(process.stdout)
    const plainErr = !coloursOn(process.stderr)
    if (!plainOut && !plainErr) return effect
    const strip = (on: boolean, args: ReadonlyArray<unknown>) =>
      on ? args.map((arg) => (typeof arg === "string" ? stripAnsi(arg) : arg)) : args
    const console: Console.Console = {
      ...base,
      log: (...args) => base.log(...strip(plainOut, args)),
      info: (...args) => base.info(...strip(plainOut, args)),
      error: (...args) => base.error(...strip(plainErr, args)),
      warn: (...args) => base.warn(...strip(plainErr, args))
    }
    return Effect.withConsole(effect, console)
  })

/** Prints a line (or several) on standard output. */
export const line = (text: string): Effect.Effect<void> => Console.log(text)

/** Prints a line on standard error. */
export const errorLine = (text: string): Effect.Effect<void> => Console.error(text)

/** Prints a warning on standard error. */
export const warning = (text: string): Effect.Effect<void> =>
  Console.error(`${err().yellow("warning:")} ${text}`)

/** JSON as the API sent it: indented on a terminal, one line otherwise (for pipes and scripts). */
export const json = (value: unknown): Effect.Effect<void> =>
  Console.log(isInteractive() ? JSON.stringify(value, null, 2) : JSON.stringify(value))

/** Column alignment of a {@link table}. */
export type Align = "left" | "right"

/**
 * An aligned table: a bold header row, columns two spaces apart, no
 * trailing spaces. Cells may be coloured; widths count visible characters.
 */
export const table = (
  headers: ReadonlyArray<string>,
  rows: ReadonlyArray<ReadonlyArray<string>>,
  align: ReadonlyArray<Align> = []
): string => {
  const widths = headers.map((header, column) =>
    Math.max(header.length, ...rows.map((row) => width(row[column] ?? "")))
  )
  const render = (cells: ReadonlyArray<string>) =>
    cells
      .map((cell, column) => {
        const pad = " ".repeat(Math.max(0, (widths[column] ?? 0) - width(cell)))
        if (align[column] === "right") return pad + cell
        return column === cells.length - 1 ? cell : cell + pad
      })
      .join("  ")
      .trimEnd()
  const bold = out().bold
  return [bold(render(headers)), ...rows.map(render)].join("\n")
}

/** `label  value` lines with the values aligned; labels dimmed on a terminal. */
export const fields = (pairs: ReadonlyArray<readonly [label: string, value: string]>): string => {
  const labelWidth = Math.max(0, ...pairs.map(([label]) => label.length))
  const dim = out().dim
  return pairs.map(([label, value]) => `${dim(label.padEnd(labelWidth))}  ${value}`).join("\n")
}

/** A byte count for people: `512 B`, `12.3 MiB`. */
export const bytes = (n: number | null): string => {
  if (n === null) return "-"
  const units = ["B", "KiB", "MiB", "GiB", "TiB"]
  let value = n
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`
}

/** A duration for people: `42s`, `5m 03s`, `2h 07m`, `3d 04h`. */
export const duration = (seconds: number): string => {
  const s = Math.max(0, Math.round(seconds))
  const two = (n: number) => String(n).padStart(2, "0")
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m ${two(s % 60)}s`
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${two(Math.floor((s % 3600) / 60))}m`
  return `${Math.floor(s / 86_400)}d ${two(Math.floor((s % 86_400) / 3600))}h`
}

/** A plugin state, coloured by what it means for the operator. */
export const state = (value: string): string => {
  const p = out()
  switch (value) {
    case "running":
      return p.green(value)
    case "failed":
    case "quarantined":
      return p.red(value)
    case "starting":
    case "stopping":
    case "restarting":
      return p.yellow(value)
    default:
      return p.dim(value)
  }
}
