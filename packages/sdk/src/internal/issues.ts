import * as ParseResult from "effect/ParseResult"
import { Issue } from "../Errors.js"

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/

/** `resources.maxMemory`, `permissions[2]`, `dependencies["com.example.other"]`. */
export const formatPath = (path: ReadonlyArray<PropertyKey>): string =>
  path
    .map((key, index) => {
      if (typeof key === "number") return `[${key}]`
      const name = String(key)
      if (typeof key === "string" && IDENTIFIER.test(name)) return index === 0 ? name : `.${name}`
      return `[${JSON.stringify(name)}]`
    })
    .join("")

/** Every problem of a decode failure, each with its path. */
export const fromParseError = (error: ParseResult.ParseError): Array<Issue> => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error).map(
    (issue) => new Issue({ path: formatPath(issue.path), message: issue.message })
  )
  // An optional field with a wrong value (or with a wrong value inside it) also fails its
  // "or undefined" branch; that line is noise next to the real problem at or below its path.
  const within = (path: string, parent: string) =>
    path === parent || parent === "" || path.startsWith(`${parent}.`) || path.startsWith(`${parent}[`)
  const noise = (issue: Issue) =>
    issue.message.startsWith("Expected undefined") &&
    issues.some(
      (other) =>
        other !== issue && !other.message.startsWith("Expected undefined") && within(other.path, issue.path)
    )
  return issues.filter((issue) => !noise(issue))
}
