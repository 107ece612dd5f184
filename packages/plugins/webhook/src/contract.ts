/**
 * The webhook service contract: what callers import (schemas only, no implementation), e.g.
 * `Services.client(Webhook)` from another plugin.
 */
import { Event } from "@blackhole/sdk/Event"
import * as ServiceContract from "@blackhole/sdk/ServiceContract"
// The SDK builds contracts from @effect/rpc's Rpc and RpcGroup and does not re-export them.
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Schema from "effect/Schema"

/** An event whose delivery failed for good, as kept in the plugin's storage. */
export const DeadLetterRecord = Schema.Struct({
  /** The event as it would have been posted. */
  event: Event,
  /** Why the last attempt failed. */
  error: Schema.String,
  /** Attempts made so far (including retries through `retry`/`sync`). */
  attempts: Schema.NonNegativeInt,
  /** When it was dead-lettered, in milliseconds since the epoch. */
  failedAt: Schema.Number,
  /** When `retry`/`sync` last tried it, if ever. */
  lastAttemptAt: Schema.optional(Schema.Number)
})
/** @see DeadLetterRecord */
export type DeadLetterRecord = typeof DeadLetterRecord.Type

/** A dead letter with its storage key (`dead-letter/<failedAt>-<event id>`), which `retry` takes. */
export const DeadLetter = Schema.Struct({ key: Schema.String, ...DeadLetterRecord.fields })
/** @see DeadLetter */
export type DeadLetter = typeof DeadLetter.Type

/** `retry` was given a key that is not a dead letter (any more). */
export class DeadLetterNotFound extends Schema.TaggedError<DeadLetterNotFound>()("DeadLetterNotFound", {
  key: Schema.String
}) {
  override get message(): string {
    return `no dead letter with key "${this.key}" (already delivered?): list them with "blackhole call webhook deadLetters"`
  }
}

/** What a `retry` (or `sync`) did. */
export const RetryResult = Schema.Struct({
  delivered: Schema.NonNegativeInt,
  /** Retried and failed again (kept, with the new error and attempt count). */
  failed: Schema.NonNegativeInt,
  /** Dead letters left after the retry. */
  remaining: Schema.NonNegativeInt
})
/** @see RetryResult */
export type RetryResult = typeof RetryResult.Type

/** Counters since the plugin started, and the dead letters kept. */
export const Status = Schema.Struct({
  /** Deliveries waiting in the queue or in flight. */
  pending: Schema.NonNegativeInt,
  queueCapacity: Schema.NonNegativeInt,
  delivered: Schema.NonNegativeInt,
  /** Events whose delivery failed after the last attempt (or was cut short by a stop). */
  deadLettered: Schema.NonNegativeInt,
  /** Pending deliveries dropped (oldest first) because the queue was full. */
  dropped: Schema.NonNegativeInt,
  /** Dead letters in storage now. */
  deadLetters: Schema.NonNegativeInt,
  /** Oldest dead letters deleted to stay within `maxDeadLetters`. */
  deadLettersDiscarded: Schema.NonNegativeInt
})
/** @see Status */
export type Status = typeof Status.Type

/** The `webhook` service on the mesh. */
export const Webhook = ServiceContract.make(
  "webhook",
  RpcGroup.make(
    ServiceContract.read(
      Rpc.make("deadLetters", {
        // Optional as a whole (`blackhole call webhook deadLetters` sends none). Nullish: an absent
        // payload reaches a subprocess plugin as null but an in-process one as undefined.
        payload: Schema.NullishOr(
          Schema.Struct({
            /** At most this many, oldest first. Default 100. */
            limit: Schema.optional(Schema.Int.pipe(Schema.between(1, 1000)))
          })
        ),
        success: Schema.Struct({ total: Schema.NonNegativeInt, items: Schema.Array(DeadLetter) })
      })
    ),
    ServiceContract.write(
      Rpc.make("retry", {
        payload: Schema.NullishOr(
          Schema.Struct({
            /** One dead letter; without it, all of them, oldest first, until the target fails again. */
            key: Schema.optional(Schema.String)
          })
        ),
        success: RetryResult,
        error: DeadLetterNotFound
      })
    ),
    ServiceContract.read(Rpc.make("status", { success: Status }))
  )
)
