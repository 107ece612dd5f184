/**
 * Dead letters: one storage value per event whose delivery failed for good, under
 * `dead-letter/<failedAt>-<event id>`, so keys sort oldest first. An in-memory index of the keys
 * (restored with one `list` at start) keeps their number within `maxDeadLetters`: beyond it the
 * oldest are deleted and counted, so a target that stays down cannot fill the node's storage.
 */
import type { Event } from "@blackhole/sdk/Event"
import type { PluginLogger } from "@blackhole/sdk/PluginLogger"
import type { PluginStorage, ReadError } from "@blackhole/sdk/PluginStorage"
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { type DeadLetter, DeadLetterNotFound, DeadLetterRecord, type RetryResult } from "../contract.js"
import type { DeliveryError } from "./delivery.js"

/** The storage prefix of every dead letter. */
export const prefix = "dead-letter/"

/** `dead-letter/<failedAt, 13 digits>-<event id>`: sorts by time as text. */
export const keyOf = (failedAt: number, eventId: string): string =>
  `${prefix}${String(Math.max(0, Math.floor(failedAt))).padStart(13, "0")}-${eventId}`

/** The dead letters of one running plugin. */
export interface DeadLetters {
  /** Keeps `event` as a dead letter; a storage failure is logged (the event is then lost). */
  readonly add: (event: Event, error: string, attempts: number) => Effect.Effect<void>
  /** The oldest `limit` dead letters, and how many there are. */
  readonly list: (
    limit: number
  ) => Effect.Effect<{ readonly total: number; readonly items: Array<DeadLetter> }>
  /**
   * One attempt per dead letter: delivered ones are deleted, failed ones kept with the new error.
   * Without a key, all of them, oldest first, stopping at the first failure worth retrying later
   * (the target is likely still down); a refused one (a 4xx) does not stop the others.
   */
  readonly retry: (
    key: string | undefined,
    attempt: (event: Event) => Effect.Effect<void, DeliveryError>
  ) => Effect.Effect<RetryResult, DeadLetterNotFound>
  readonly count: Effect.Effect<number>
  /** Deleted to stay within the bound. */
  readonly discarded: Effect.Effect<number>
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const RecordJson = Schema.parseJson(DeadLetterRecord)
const encodeRecord = Schema.encode(RecordJson)
const decodeRecord = Schema.decodeUnknownEither(RecordJson)

const messageOf = (error: unknown): string =>
  typeof error === "object" && error !== null && "message" in error ? String(error.message) : String(error)

/** Loads the index of the dead letters kept in storage. */
export const make = (options: {
  readonly storage: Context.Tag.Service<PluginStorage>
  readonly logger: Context.Tag.Service<PluginLogger>
  readonly maxDeadLetters: number
}): Effect.Effect<DeadLetters, ReadError> =>
  Effect.gen(function* () {
    const { logger, maxDeadLetters, storage } = options
    // Insertion order is age order: keys come back from `list` sorted, and new ones are newer.
    const keys = new Set(yield* storage.list(prefix))
    let discarded = 0
    // Two retries at once would post the same dead letter twice.
    const retrying = yield* Effect.makeSemaphore(1)

    const write = (key: string, record: DeadLetterRecord) =>
      Effect.flatMap(Effect.orDie(encodeRecord(record)), (text) => storage.store(key, encoder.encode(text)))

    // Only this plugin writes under the prefix: a value that does not decode is a bug, reported, not skipped.
    const read = (key: string): Effect.Effect<DeadLetterRecord | undefined> =>
      storage.retrieve(key).pipe(
        Effect.orDie,
        Effect.flatMap(
          Option.match({
            onNone: () => Effect.succeed(undefined),
            onSome: (bytes) =>
              Either.match(decodeRecord(decoder.decode(bytes)), {
                onLeft: (error) => Effect.dieMessage(`dead letter ${key} is unreadable: ${error.message}`),
                onRight: Effect.succeed
              })
          })
        )
      )

    const trim = Effect.gen(function* () {
      while (keys.size > maxDeadLetters) {
        const oldest = keys.values().next().value as string
        keys.delete(oldest)
        yield* storage.delete(oldest)
        discarded++
        yield* logger.log(
          "warn",
          `more than ${maxDeadLetters} dead letters: deleted the oldest, ${oldest} (${discarded} so far); retry them with "blackhole call webhook retry" once the target is back, or raise maxDeadLetters`
        )
      }
    })

    const add: DeadLetters["add"] = (event, error, attempts) =>
      Effect.gen(function* () {
        const failedAt = yield* Clock.currentTimeMillis
        const key = keyOf(failedAt, event.id)
        // Indexed before the write, so whoever sees the stored value also sees it listed.
        keys.add(key)
        yield* write(key, { event, error, attempts, failedAt }).pipe(
          Effect.tapError(() => Effect.sync(() => keys.delete(key)))
        )
        yield* trim
      }).pipe(
        Effect.catchAll((cause) =>
          logger.log(
            "error",
            `could not keep event ${event.id} (${event.type}) as a dead letter, so it is lost: ${messageOf(cause)}`
          )
        )
      )

    const list: DeadLetters["list"] = (limit) =>
      Effect.gen(function* () {
        const items: Array<DeadLetter> = []
        for (const key of keys) {
          if (items.length >= limit) break
          const record = yield* read(key)
          if (record !== undefined) items.push({ key, ...record })
        }
        return { total: keys.size, items }
      })

    /** One attempt for one dead letter: "delivered", "gone" (deleted meanwhile), or why it failed. */
    const retryOne = (key: string, attempt: (event: Event) => Effect.Effect<void, DeliveryError>) =>
      Effect.gen(function* () {
        const record = yield* read(key)
        if (record === undefined) {
          keys.delete(key)
          return "gone" as const
        }
        const result = yield* Effect.either(attempt(record.event))
        if (Either.isRight(result)) {
          keys.delete(key)
          yield* Effect.orDie(storage.delete(key))
          return "delivered" as const
        }
        // Unless the bound deleted it while we tried: then writing would bring back an unindexed value.
        if (keys.has(key)) {
          const lastAttemptAt = yield* Clock.currentTimeMillis
          yield* Effect.orDie(
            write(key, { ...record, attempts: record.attempts + 1, error: result.left.reason, lastAttemptAt })
          )
        }
        return result.left
      })

    const retry: DeadLetters["retry"] = (key, attempt) =>
      retrying.withPermits(1)(
        Effect.gen(function* () {
          let delivered = 0
          let failed = 0
          if (key !== undefined) {
            if (!keys.has(key)) return yield* new DeadLetterNotFound({ key })
            const outcome = yield* retryOne(key, attempt)
            if (outcome === "gone") return yield* new DeadLetterNotFound({ key })
            if (outcome === "delivered") delivered++
            else failed++
            return { delivered, failed, remaining: keys.size }
          }
          for (const next of [...keys]) {
            const outcome = yield* retryOne(next, attempt)
            if (outcome === "delivered") delivered++
            else if (outcome !== "gone") {
              failed++
              if (outcome.retryable) break
            }
          }
          return { delivered, failed, remaining: keys.size }
        })
      )

    yield* Effect.orDie(trim)
    return {
      add,
      list,
      retry,
      count: Effect.sync(() => keys.size),
      discarded: Effect.sync(() => discarded)
    }
  })
