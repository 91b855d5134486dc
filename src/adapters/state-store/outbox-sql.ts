import type { EventOutbox, OutboxEvent } from '../../ports/event-outbox.ts'
import { toEvent } from './row-mapping.ts'
import type { SqlDatabase } from './sql-database.ts'

/** $1 now, $2 id, $3 token. */
const EVENT_DELIVERED_SQL = `
  UPDATE outbox SET delivered_at = $1, lease_owner = NULL, lease_token = NULL
   WHERE id = $2 AND lease_token = $3 AND delivered_at IS NULL`
/** $1 error, $2 next attempt, $3 id, $4 token. */
const EVENT_FAILED_SQL = `
  UPDATE outbox SET last_error = $1, next_attempt_at = $2, lease_owner = NULL, lease_token = NULL
   WHERE id = $3 AND lease_token = $4 AND delivered_at IS NULL`

/** Webhook events, written with the change they report (see jobQueueSql's update), delivered under a fenced lease. */
export function outboxSql(db: SqlDatabase): EventOutbox {
  return {
    async claimEvents(owner: string, limit: number, leaseMs: number, now: number): Promise<OutboxEvent[]> {
      if (limit <= 0) return []
      const rows = await db.at(now).rows(db.statements.claimEvents, [limit, owner, leaseMs])
      // In order of writing (SQLite's RETURNING has no defined order).
      return rows.sort((a, b) => Number(a.seq) - Number(b.seq)).map(toEvent)
    },

    async eventDelivered(event: OutboxEvent, now: number): Promise<void> {
      await db.write(EVENT_DELIVERED_SQL, [now, event.id, event.token])
    },

    async eventFailed(event: OutboxEvent, error: string, nextAttemptAt: number): Promise<void> {
      await db.write(EVENT_FAILED_SQL, [error, nextAttemptAt, event.id, event.token])
    }
  }
}
