/** Helpers shared by the fs-store plugin's tests. */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

/** A fresh temp directory, removed when the Scope closes. */
export const tempDir: Effect.Effect<string, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "bh-fs-store-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

const encoder = new TextEncoder()
const decoder = new TextDecoder()
/** UTF-8 bytes of `text`. */
export const bytes = (text: string): Uint8Array => encoder.encode(text)
/** `bytes` back to text. */
export const text = (value: Uint8Array): string => decoder.decode(value)

/** Every file under `dir`, relative, sorted. */
export const filesUnder = (dir: string): Array<string> =>
  (fs.readdirSync(dir, { recursive: true }) as Array<string>)
    .filter((name) => fs.statSync(path.join(dir, name)).isFile())
    .sort()
