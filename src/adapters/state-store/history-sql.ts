import type { AuditEntry, AuditLog, HistoryPruning, PruneCutoffs, ScanHistory, ScanRecord } from '../../ports/history-store.ts'
import { PRUNE_TOKEN_USES_SQL } from './intent-sql.ts'
import { toAudit, toScan } from './row-mapping.ts'
import type { SqlDatabase } from './sql-database.ts'

/** $1 at, $2 actor, $3 action, $4 target, $5 detail. */
const INSERT_AUDIT_SQL = 'INSERT INTO audit (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)'
const LIST_AUDIT_SQL = 'SELECT * FROM audit ORDER BY at DESC, id DESC LIMIT $1'
const LIST_AUDIT_BEFORE_SQL = 'SELECT * FROM audit WHERE at < $2 ORDER BY at DESC, id DESC LIMIT $1'

/**
 * Retention, a batch ($2 rows) at a time of what is older than $1: delivered events, scans,
 * audit rows. Undelivered events are never pruned, however old.
 */
const PRUNE_OUTBOX_SQL = 'DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE delivered_at < $1 ORDER BY delivered_at LIMIT $2)'
const PRUNE_SCANS_SQL = 'DELETE FROM scans WHERE id IN (SELECT id FROM scans WHERE started_at < $1 ORDER BY started_at LIMIT $2)'
const PRUNE_AUDIT_SQL = 'DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < $1 ORDER BY at LIMIT $2)'
/**
 * A rescan created before $1 that no longer needs its items: finished (nothing unfinished, not
 * listing), or cancelled before $1 and fully unwound. Its items go a batch at a time, then itself.
 */
const OLD_RESCAN_SQL = `
  SELECT id FROM rescans r
   WHERE created_at < $1 AND cursor_id IS NULL
     AND ((state = 'cancelled' AND cancelled_at < $1)
          OR (state = 'running' AND NOT EXISTS (SELECT 1 FROM rescan_items i WHERE i.rescan_id = r.id AND i.outcome IS NULL)))
   ORDER BY created_at, id LIMIT 1`
const PRUNE_RESCAN_ITEMS_SQL = 'DELETE FROM rescan_items WHERE rescan_id = $1 AND upload_id IN (SELECT upload_id FROM rescan_items WHERE rescan_id = $1 LIMIT $2)'
const PRUNE_RESCAN_SQL = 'DELETE FROM rescans WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM rescan_items WHERE rescan_id = $1)'

const INSERT_SCAN_SQL = `
  INSERT INTO scans (upload_id, started_at, duration_ms, endpoint, engine, signature_version, outcome, signature, detail, bytes)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`

/** The scans of each upload, the operators' audit trail, and retention, `batchSize` rows per statement. */
export function historySql(db: SqlDatabase, batchSize: number): ScanHistory & AuditLog & HistoryPruning {
  return {
    async recordScan(s: ScanRecord): Promise<void> {
      await db.write(INSERT_SCAN_SQL, [s.uploadId, s.startedAt, s.durationMs, s.endpoint, s.engine, s.signatureVersion, s.outcome, s.signature, s.detail, s.bytes])
    },

    async listScans(uploadId: string): Promise<ScanRecord[]> {
      return (await db.rows('SELECT * FROM scans WHERE upload_id = $1 ORDER BY id', [uploadId])).map(toScan)
    },

    async recordAudit(e: AuditEntry): Promise<void> {
      await db.write(INSERT_AUDIT_SQL, [e.at, e.actor, e.action, e.target, JSON.stringify(e.detail)])
    },

    async listAudit(limit: number, before?: number): Promise<AuditEntry[]> {
      const rows = before === undefined ? await db.rows(LIST_AUDIT_SQL, [limit]) : await db.rows(LIST_AUDIT_BEFORE_SQL, [limit, before])
      return rows.map(toAudit)
    },

    async prune(cutoffs: PruneCutoffs): Promise<number> {
      const n = batchSize
      // Each statement is its own short write: SQLite's single writer is never held for long.
      let deleted = (await db.write(PRUNE_OUTBOX_SQL, [cutoffs.historyBefore, n])) + (await db.write(PRUNE_SCANS_SQL, [cutoffs.historyBefore, n]))
      if (cutoffs.auditBefore !== null) deleted += await db.write(PRUNE_AUDIT_SQL, [cutoffs.auditBefore, n])
      if (cutoffs.tokenUsesBefore !== undefined) deleted += await db.write(PRUNE_TOKEN_USES_SQL, [cutoffs.tokenUsesBefore, n])
      const [old] = await db.rows(OLD_RESCAN_SQL, [cutoffs.historyBefore])
      if (old) {
        const items = await db.write(PRUNE_RESCAN_ITEMS_SQL, [old.id, n])
        deleted += items > 0 ? items : await db.write(PRUNE_RESCAN_SQL, [old.id])
      }
      return deleted
    }
  }
}
