import type { Claim, JobQueue, QueueStats, StatusChange } from '../../ports/job-queue.ts'
import { toRecord, type Row } from './row-mapping.ts'
import {
  INSERT_EVENT_SQL,
  QUEUE_STATS_SQL,
  RELEASE_SQL,
  RENEW_LEASE_SQL,
  REQUEUE_FAILED_SQL,
  RESCAN_OUTCOME_SQL,
  SqlValues,
  statusChangeSql,
  type Queue
} from './shared-sql.ts'
import type { SqlDatabase } from './sql-database.ts'

/** The jobs on uploads: claims (scans, promotions, requarantines, rescans), leases and fenced status changes. */
export function jobQueueSql(db: SqlDatabase): JobQueue {
  const { statements } = db
  // Claims and lease renewals are not waited on to reach the disk (SQLite): losing one in a power
  // loss is an expired lease, which the next claim repairs; the worker that held it is gone too.
  const lease = (now: number) => db.at(now, { durable: false })
  const claims = (rows: Row[], owner: string, kind: Claim['kind']): Claim[] =>
    rows.map((row) => ({ upload: toRecord(row), owner, token: String(row.lease_token), kind }))
  return {
    async claim(owner: string, limit: number, leaseMs: number, now: number, queue: Queue = 'uploads'): Promise<Claim[]> {
      if (limit <= 0) return []
      return claims(await lease(now).rows(statements.claim(queue), [now, limit, owner, leaseMs]), owner, 'scan')
    },

    async claimRescans(owner: string, limit: number, leaseMs: number, now: number): Promise<Claim[]> {
      if (limit <= 0) return []
      return claims(await lease(now).rows(statements.claimRescans, [now, limit, owner, leaseMs]), owner, 'rescan')
    },

    async renewLease(claim: Claim, leaseMs: number, now: number): Promise<boolean> {
      return (await lease(now).write(RENEW_LEASE_SQL, [leaseMs, claim.upload.id, claim.token])) === 1
    },

    async update(claim: Claim, change: StatusChange, now: number): Promise<boolean> {
      const v = new SqlValues(db.dialect)
      const update = statusChangeSql(claim, change, now, v)
      const events = change.events ?? []
      if (events.length === 0 && change.rescanOutcome === undefined) return (await db.at(now).write(update, v.values)) === 1
      // The events and the rescan outcome are written with the change, or not at all.
      const outcome = change.rescanOutcome === undefined ? null : { outcome: change.rescanOutcome, now, uploadId: claim.upload.id }
      if (statements.chained) {
        const [row] = await db.rows(statements.chained.statusChange(update, events, outcome, v), v.values)
        return Number(row?.n) === 1
      }
      return db.transaction(async (tx) => {
        if ((await tx.write(update, v.values)) !== 1) return false
        for (const e of events) await tx.write(INSERT_EVENT_SQL, [e.id, e.type, JSON.stringify(e.data), e.createdAt])
        if (outcome !== null) await tx.write(RESCAN_OUTCOME_SQL, [outcome.outcome, now, outcome.uploadId])
        return true
      }, { now })
    },

    async giveBack(claim: Claim, now: number): Promise<boolean> {
      return (await db.at(now).write(RELEASE_SQL, [now, claim.upload.id, claim.token])) === 1
    },

    requeueFailed(now: number, limit: number): Promise<number> {
      return db.at(now).write(REQUEUE_FAILED_SQL, [now, limit])
    },

    async queueStats(): Promise<QueueStats> {
      const [row] = await db.rows(QUEUE_STATS_SQL)
      return { depth: Number(row?.depth), oldestCreatedAt: row?.oldest == null ? null : Number(row.oldest) }
    }
  }
}
