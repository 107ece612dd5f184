/** Who is calling: permission checks and hook payloads name the principal. */
import * as Permission from "@blackhole/sdk/Permission"
import * as FiberRef from "effect/FiberRef"

/** A caller on the mesh, the bus or storage. */
export type Principal =
  /** A plugin, with its effective grants. */
  | { readonly _tag: "Plugin"; readonly id: string; readonly granted: ReadonlyArray<string> }
  /** An authenticated operator (admin API, CLI): every permission. */
  | { readonly _tag: "Operator" }
  /** The node itself. */
  | { readonly _tag: "Core" }

/** The node itself. */
export const core: Principal = { _tag: "Core" }
/** The operator. */
export const operator: Principal = { _tag: "Operator" }
/** A plugin with its grants. */
export const plugin = (id: string, granted: ReadonlyArray<string>): Principal => ({
  _tag: "Plugin",
  id,
  granted
})

/** The principal's name in errors, logs and hook payloads. */
export const name = (principal: Principal): string =>
  principal._tag === "Plugin" ? principal.id : principal._tag === "Operator" ? "operator" : "core"

/** Whether the principal holds a permission covering every one of `required` alternatives' first match. */
export const allows = (principal: Principal, ...anyOf: ReadonlyArray<string>): boolean =>
  principal._tag !== "Plugin" || anyOf.some((required) => Permission.allows(principal.granted, required))

/** The caller of the mesh call being served: set by the mesh, read by core services (e.g. for hook payloads). */
export const current: FiberRef.FiberRef<Principal> = FiberRef.unsafeMake<Principal>(core)
