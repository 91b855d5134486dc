import Type, { type Static } from 'typebox'
import type { RescanRecord } from '../ports/rescan-store.ts'

/** A rescan as operators see it, defined once: the admin routes serialise it with this schema. */
export const RescanView = Type.Object(
  {
    id: Type.String(),
    scope: Type.Record(Type.String(), Type.Unknown()),
    state: Type.Union([Type.Literal('listing'), Type.Literal('running'), Type.Literal('done'), Type.Literal('cancelled')]),
    createdBy: Type.String(),
    createdAt: Type.String({ format: 'date-time' }),
    cancelledAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    total: Type.Integer({ description: 'Uploads covered (for an adoption: registered so far).' }),
    done: Type.Integer(),
    clean: Type.Integer(),
    infected: Type.Integer(),
    unscannable: Type.Integer(),
    failed: Type.Integer(),
    ratePerSecond: Type.Number({ description: 'Uploads finished per second since the rescan started.' }),
    estimatedEnd: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'At the current rate; null when unknown or finished.' })
  },
  { $id: 'Rescan' }
)
export type RescanView = Static<typeof RescanView>

export const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString())

/** Progress, rate, and when the rescan should end at that rate. */
export function rescanView(r: RescanRecord, now = Date.now()): RescanView {
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
