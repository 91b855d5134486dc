import type { AuditEntry, ScanRecord } from '../ports/history-store.ts'
import type { RescanRecord } from '../ports/rescan-store.ts'

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString())

/** A rescan as operators see it: progress, rate, and when it should end at that rate. */
export function rescanView(r: RescanRecord, now = Date.now()) {
  const finished = r.state === 'running' && r.done === r.total && r.lastDoneAt !== null
  const state = finished || (r.state === 'running' && r.total === 0) ? 'done' : r.state
  const until = state === 'done' ? (r.lastDoneAt ?? now) : r.state === 'cancelled' ? (r.cancelledAt ?? now) : now
  const seconds = Math.max(0.001, (until - r.createdAt) / 1000)
  const ratePerSecond = Math.round((r.done / seconds) * 1000) / 1000
  const left = r.total - r.done
  const estimatedEnd = state === 'running' && ratePerSecond > 0 && left > 0 ? iso(now + Math.round((left / ratePerSecond) * 1000)) : null
  const { clean, infected, unscannable, failed, total, done } = r
  return {
    id: r.id,
    scope: r.scope,
    state,
    createdBy: r.createdBy,
    createdAt: iso(r.createdAt) as string,
    cancelledAt: iso(r.cancelledAt),
    total,
    done,
    clean,
    infected,
    unscannable,
    failed,
    ratePerSecond,
    estimatedEnd
  }
}

export function scanView(s: ScanRecord) {
  const { durationMs, outcome, signature, detail, engine, signatureVersion, endpoint, bytes } = s
  return { startedAt: iso(s.startedAt) as string, durationMs, outcome, signature, detail, engine, signatureVersion, endpoint, bytes }
}

export function auditView(a: AuditEntry) {
  return { ...a, at: iso(a.at) as string }
}
