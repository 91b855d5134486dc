export interface ScanRecord {
  uploadId: string
  startedAt: number
  durationMs: number
  endpoint: string | null
  engine: string | null
  signatureVersion: number | null
  /** clean | infected | unscannable, or error for a transient failure. */
  outcome: 'clean' | 'infected' | 'unscannable' | 'error'
  signature: string | null
  detail: string | null
  bytes: number
}

export interface AuditEntry {
  at: number
  /** Who: the admin key's id (never the key). */
  actor: string
  action: string
  target: string
  detail: Record<string, unknown>
}

/** What retention removes: rows older than these times. */
export interface PruneCutoffs {
  /** Delivered outbox events, scan history, and finished or cancelled rescans with their items. */
  historyBefore: number
  /** Audit rows; null: kept for ever. */
  auditBefore: number | null
  /** Upload token use counts of tokens that expired before this (absent: none go). */
  tokenUsesBefore?: number
}

/** One row per scan try. */
export interface ScanHistory {
  recordScan(scan: ScanRecord): Promise<void>
  listScans(uploadId: string): Promise<ScanRecord[]>
}

/** What operators did. */
export interface AuditLog {
  recordAudit(entry: AuditEntry): Promise<void>
  /** Newest first. */
  listAudit(limit: number, before?: number): Promise<AuditEntry[]>
}

/** Retention of old rows. */
export interface HistoryPruning {
  /** Retention: deletes at most one batch of each kind of old row; how many rows went (0: nothing left to prune). */
  prune(cutoffs: PruneCutoffs): Promise<number>
}
