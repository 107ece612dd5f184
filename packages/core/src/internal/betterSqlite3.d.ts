// The parts of better-sqlite3 12 the SQLite backend uses (the package ships no types).
declare module "better-sqlite3" {
  interface RunResult {
    readonly changes: number
  }
  interface Statement {
    run(...params: ReadonlyArray<unknown>): RunResult
    get(...params: ReadonlyArray<unknown>): unknown
    all(...params: ReadonlyArray<unknown>): Array<unknown>
  }
  interface Transaction<F extends (...args: Array<never>) => unknown> {
    (...args: Parameters<F>): ReturnType<F>
    immediate(...args: Parameters<F>): ReturnType<F>
  }
  class Database {
    constructor(filename: string, options?: { readonly readonly?: boolean; readonly fileMustExist?: boolean })
    prepare(sql: string): Statement
    exec(sql: string): this
    pragma(source: string, options?: { readonly simple?: boolean }): unknown
    transaction<F extends (...args: Array<never>) => unknown>(fn: F): Transaction<F>
    close(): this
  }
  export default Database
}
