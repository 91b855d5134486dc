import type { NewEvent } from '../../ports/event-outbox.ts'
import type { RescanOutcome } from '../../ports/job-queue.ts'
import type { Queue, SqlValues } from './shared-sql.ts'

/**
 * The statements whose text differs between SQLite and PostgreSQL (sqlite-statements.ts,
 * pg-statements.ts); everything else is shared SQL. The same placeholders mean the same values in
 * both. Leases are on the lease clock gw_now() (see shared-sql.ts).
 */
export interface DialectStatements {
  /** Pick what is due and lease it, in one statement: $1 the caller's now (updated_at), $2 limit, $3 owner, $4 the lease in ms. */
  claim(queue: Queue): string
  /** The same for due rescans: the status stays, the lease end is kept in next_scan_at. */
  claimRescans: string
  /** $1 limit, $2 owner, $3 the lease in ms; returned in seq order. */
  claimEvents: string
  /** One adoption listing free to take: $1 owner, $2 the lease in ms. */
  claimAdoption: string
  /** Intents due for the sweeper, marked abandoned and due again at $3: $1 now, $2 cutoff, $4 limit. */
  claimIntents: string
  /** Appended to a SELECT whose rows the transaction goes on to change: locks them where the engine can (SQLite's writer lock covers them). */
  forUpdate: string
  /** Object keys known as uploads or intents, of the list $1 (a value made by textList). */
  knownKeys: string
  textList(values: string[]): unknown
  /** The table of applied migrations, created if missing. */
  versionsTable: string
  /**
   * Writes that PostgreSQL chains into one statement (data-modifying WITH); null on SQLite, which
   * runs them as a transaction of shared statements instead.
   */
  chained: ChainedWrites | null
}

export interface ChainedWrites {
  /**
   * A status change (statusChangeSql, values in v) with the events it reports and the rescan
   * outcome it records, written together or not at all: one row, n = 1 when the change was made.
   */
  statusChange(update: string, events: readonly NewEvent[], outcome: { outcome: RescanOutcome; now: number; uploadId: string } | null, v: SqlValues): string
  /** REQUEST_RELEASE_SQL's values; the released upload also leaves its unfinished rescans (LEAVE_RESCANS_SQL). */
  requestRelease: string
  /** Registers the adopted objects whose key is new and covers them by the adoption: $1..$5 arrays of id, key, size, filename, content type, $6 now, $7 the rescan. */
  adoptObjects: string
}
