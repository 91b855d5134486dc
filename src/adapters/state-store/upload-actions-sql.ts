import type { ReleaseRequest, UploadActions } from '../../ports/upload-actions.ts'
import type { UploadRecord } from '../../ports/upload-record.ts'
import { toRecord } from './row-mapping.ts'
import { LEAVE_RESCANS_SQL, REQUEST_RELEASE_SQL, RETRY_FAILED_SQL, SCHEDULE_RESCAN_SQL } from './shared-sql.ts'
import type { SqlDatabase } from './sql-database.ts'

/** What an operator asks of one upload: release it, rescan it now, retry it after a failure. */
export function uploadActionsSql(db: SqlDatabase): UploadActions {
  const { statements } = db
  return {
    async requestRelease(id: string, release: ReleaseRequest, now: number): Promise<UploadRecord | null> {
      const values = [now, release.by, release.reason, id, release.from ?? null, release.signature ?? null, release.version ?? null]
      if (statements.chained) {
        const [row] = await db.rows(statements.chained.requestRelease, values)
        return row ? toRecord(row) : null
      }
      return db.transaction(async (tx) => {
        const [row] = await tx.rows(REQUEST_RELEASE_SQL, values)
        if (!row) return null
        await tx.write(LEAVE_RESCANS_SQL, [id])
        return toRecord(row)
      }, { now })
    },

    async scheduleRescan(id: string, now: number): Promise<boolean> {
      return (await db.at(now).write(SCHEDULE_RESCAN_SQL, [now, id])) === 1
    },

    async retryFailed(id: string, now: number): Promise<boolean> {
      return (await db.at(now).write(RETRY_FAILED_SQL, [now, id])) === 1
    }
  }
}
