/**
 * A service's dispatch (decode the payload, run the handler, encode the result), as the mesh and a
 * plugin process run it: what a caller gets for every kind of handler, and that a handler whose
 * effect is already complete yields a complete dispatch (an Exit: run without a fiber).
 */
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"
import { InvalidPayload, PluginFailure } from "../src/Errors.js"
import * as ServiceContract from "../src/ServiceContract.js"

class TooLong extends Schema.TaggedError<TooLong>()("TooLong", { limit: Schema.Number }) {}

const Shout = ServiceContract.make(
  "shout",
  RpcGroup.make(
    ...(["now", "later", "thrown"] as const).map((tag) =>
      ServiceContract.read(
        Rpc.make(tag, {
          payload: { text: Schema.String, at: Schema.NumberFromString },
          success: Schema.Struct({ text: Schema.String, at: Schema.NumberFromString }),
          error: TooLong
        })
      )
    )
  )
)

const shout = ({ text, at }: { readonly text: string; readonly at: number }) =>
  text.length > 5 ? Effect.fail(new TooLong({ limit: 5 })) : Effect.succeed({ text: text.toUpperCase(), at })

const dispatch = ServiceContract.toDispatch(
  ServiceContract.implement(Shout, {
    now: shout,
    later: (payload) => Effect.flatMap(Effect.yieldNow(), () => shout(payload)),
    thrown: () => {
      throw new Error("the handler threw instead of failing")
    }
  }),
  "com.example.shout"
)

describe("ServiceContract.toDispatch", () => {
  it.effect("a handler answering with a complete effect gives a complete dispatch, encoded", () =>
    Effect.gen(function* () {
      const settled = dispatch("now", { text: "hey", at: "7" })
      assert.isTrue(Exit.isExit(settled))
      assert.deepStrictEqual(yield* settled, { text: "HEY", at: "7" })
      // Its typed error is encoded the same way as a later one's.
      const error = yield* Effect.flip(dispatch("now", { text: "too long", at: "7" }))
      const later = yield* Effect.flip(dispatch("later", { text: "too long", at: "7" }))
      assert.instanceOf(error, ServiceContract.MethodError)
      assert.instanceOf(later, ServiceContract.MethodError)
      assert.deepStrictEqual(
        (error as ServiceContract.MethodError).error,
        (later as ServiceContract.MethodError).error
      )
      assert.deepStrictEqual((error as ServiceContract.MethodError).error, { _tag: "TooLong", limit: 5 })
    })
  )

  it.effect("an asynchronous handler gives the same answers through its effect", () =>
    Effect.gen(function* () {
      const later = dispatch("later", { text: "hey", at: "7" })
      assert.isFalse(Exit.isExit(later))
      assert.deepStrictEqual(yield* later, { text: "HEY", at: "7" })
    })
  )

  it.effect("an invalid payload fails with InvalidPayload before the handler runs", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(dispatch("now", { text: "hey", at: 7 }))
      assert.instanceOf(error, InvalidPayload)
      assert.deepStrictEqual(
        (error as InvalidPayload).issues.map((issue) => issue.path),
        ["at"]
      )
    })
  )

  it.effect("a handler that throws is a PluginFailure naming it, not an exception out of dispatch", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(dispatch("thrown", { text: "hey", at: "7" }))
      assert.instanceOf(error, PluginFailure)
      assert.include((error as PluginFailure).reason, "shout.thrown")
      assert.include((error as PluginFailure).reason, "the handler threw instead of failing")
    })
  )
})
