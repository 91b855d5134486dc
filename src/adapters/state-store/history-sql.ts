import type { AuditEntry, AuditLog, HistoryPruning, PruneCutoffs, ScanHistory, ScanRecord } from '../../ports/history-store.ts'
import { toAudit, toScan } from './row-mapping.ts'
import {
  INSERT_AUDIT_SQL,
  LIST_AUDIT_BEFORE_SQL,
  LIST_AUDIT_SQL,
  OLD_RESCAN_SQL,
  PRUNE_AUDIT_SQL,
  PRUNE_OUTBOX_SQL,
  PRUNE_RESCAN_ITEMS_SQL,
  PRUNE_RESCAN_SQL,
  PRUNE_SCANS_SQL
} from './shared-sql.ts'
import type { SqlDatabase } from './sql-database.ts'

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
      const [old] = await db.rows(OLD_RESCAN_SQL, [cutoffs.historyBefore])
      if (old) {
        const items = await db.write(PRUNE_RESCAN_ITEMS_SQL, [old.id, n])
        deleted += items > 0 ? items : await db.write(PRUNE_RESCAN_SQL, [old.id])
      }
      return deleted
    }
  }
}
