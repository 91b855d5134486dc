import type { RescanSelection } from '../../ports/rescan-store.ts'
import { notCancelled, rescannable, type SqlValues } from './shared-sql.ts'

// Rescans (shared by both engines): their rows, the uploads they select, a batch at a time, and their cancellation.

/** The most ids one rescan may name: the list goes to the database as one parameter. */
export const MAX_RESCAN_IDS = 10_000

export type StoredSelection = Exclude<RescanSelection, { kind: 'adopt' }>

/**
 * The INSERT that covers the selected stored uploads for rescan `rescanId`, those whose id is after
 * `range.after` up to `range.upTo` (null: no bound), a batch. Throws RangeError, before anything
 * is written, for an id list longer than MAX_RESCAN_IDS.
 */
export function coverSql(rescanId: string, selection: StoredSelection, v: SqlValues, range: { after: string; upTo: string | null } = { after: '', upTo: null }): string {
  // CAST: PostgreSQL cannot infer the type of a bare parameter in a select list.
  const id = `CAST(${v.add(rescanId)} AS TEXT)`
  const upTo = v.add(range.upTo)
  return `INSERT INTO rescan_items (rescan_id, upload_id)
          SELECT ${id}, id FROM uploads
           WHERE ${inRange('id', v.add(range.after), upTo)} AND status IN (${rescannable}) AND ${selectionWhere(selection, v)}`
}

function selectionWhere(selection: StoredSelection, v: SqlValues): string {
  switch (selection.kind) {
    case 'all':
      return '1 = 1'
    case 'prefix':
      // Case-sensitive in both, with the pattern's wildcards taken literally. SQLite's LIKE
      // ignores ASCII case, so it uses GLOB there (with GLOB's own wildcards escaped).
      return v.dialect === 'pg' ? `object_key LIKE ${v.add(likePrefix(selection.prefix))} ESCAPE '\\'` : `object_key GLOB ${v.add(globPrefix(selection.prefix))}`
    case 'uploaded': {
      const bounds = ['1 = 1']
      if (selection.before !== null) bounds.push(`created_at < ${v.add(selection.before)}`)
      if (selection.after !== null) bounds.push(`created_at >= ${v.add(selection.after)}`)
      return bounds.join(' AND ')
    }
    case 'ids':
      if (selection.ids.length > MAX_RESCAN_IDS) throw new RangeError(`a rescan names at most ${MAX_RESCAN_IDS} ids, not ${selection.ids.length}`)
      return v.dialect === 'pg' ? `id = ANY(CAST(${v.add(selection.ids)} AS TEXT[]))` : `id IN (SELECT value FROM json_each(${v.add(JSON.stringify(selection.ids))}))`
    case 'signatureVersionBelow':
      // An unknown version (never scanned by a reporting engine) is older than any.
      return `(signature_version IS NULL OR signature_version < ${v.add(selection.version)})`
  }
}

/** A LIKE pattern matching keys that start with `prefix`, taken literally (escape character \). */
export function likePrefix(prefix: string): string {
  return `${prefix.replace(/[\\%_]/g, '\\$&')}%`
}

/** A GLOB pattern matching keys that start with `prefix`, taken literally: [*] matches a *. */
export function globPrefix(prefix: string): string {
  return `${prefix.replace(/[*?[]/g, '[$&]')}*`
}

/** $1 id, $2 scope, $3 created by, $4 created at, $5 state, $6 bucket, $7 prefix, $8 selection, $9 cursor. */
export const INSERT_RESCAN_SQL = `
  INSERT INTO rescans (id, scope, created_by, created_at, state, bucket, prefix, selection, cursor_id)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`

/**
 * The covered uploads are due now ($1), for rescan $2, those with an id after $3 up to $4 (NULL:
 * no bound). Leased ones are left alone: they finish the scan they are in and count for this
 * rescan too (rescanOutcome). One already due keeps its time.
 */
export const MAKE_DUE_SQL = `
  UPDATE uploads SET next_scan_at = LEAST($1, gw_now())
   WHERE id IN (SELECT upload_id FROM rescan_items WHERE rescan_id = $2 AND ${inRange('upload_id', '$3', '$4')})
     AND lease_token IS NULL AND (next_scan_at IS NULL OR next_scan_at > LEAST($1, gw_now()))`

/**
 * Wakes the idle workers of every replica (PostgreSQL, from the transaction that made uploads due):
 * next_scan_at is bookkeeping, which the uploads' trigger does not announce (migration 9).
 */
export const NOTIFY_DUE_PG_SQL = "SELECT pg_notify('gw_upload_due', current_schema())"

/**
 * Big rescans select and cancel in batches of upload ids, each its own short transaction, so no
 * statement outlives the statement timeout and no write lock is held for long, however many
 * uploads there are. A batch covers the ids after the rescan's cursor up to the page end.
 */
export function inRange(column: string, after: string, upTo: string): string {
  return `${column} > ${after} AND (CAST(${upTo} AS TEXT) IS NULL OR ${column} <= ${upTo})`
}

/** The last upload id of the page of $2 + 1 ids after $1; none when fewer are left (the last page). */
export const PAGE_END_SQL = 'SELECT id FROM uploads WHERE id > $1 ORDER BY id LIMIT 1 OFFSET $2'
/** The same over the uploads a rescan ($1) covers. */
export const ITEMS_PAGE_END_SQL = 'SELECT upload_id AS id FROM rescan_items WHERE rescan_id = $1 AND upload_id > $2 ORDER BY upload_id LIMIT 1 OFFSET $3'
/** A rescan with batches left: selecting its uploads (listing, with a selection) or being cancelled. Oldest first. */
export const NEXT_BATCH_SQL = `
  SELECT * FROM rescans WHERE cursor_id IS NOT NULL AND ((state = 'listing' AND selection IS NOT NULL) OR state = 'cancelled')
   ORDER BY created_at, id LIMIT 1`
/** $1 id, $2 the last upload id done (NULL: no batch left), $3 state. */
export const RESCAN_CURSOR_SQL = 'UPDATE rescans SET cursor_id = $2, state = $3 WHERE id = $1'

/**
 * A rescan with the counts of its items. Cancelled items (outcome 'cancelled') count in total,
 * as covered, but neither as done nor as unfinished: a cancelled rescan reads "n of total".
 * `filter` picks the rescans (WHERE / ORDER BY / LIMIT on rescans); the result is newest first.
 */
export function rescanSummarySql(filter: string): string {
  return `
    WITH r AS (SELECT * FROM rescans ${filter}),
    c AS (
      SELECT rescan_id, count(*) AS total,
             sum(CASE WHEN outcome IS NOT NULL AND outcome <> 'cancelled' THEN 1 ELSE 0 END) AS done,
             sum(CASE WHEN outcome = 'clean' THEN 1 ELSE 0 END) AS clean,
             sum(CASE WHEN outcome = 'infected' THEN 1 ELSE 0 END) AS infected,
             sum(CASE WHEN outcome = 'unscannable' THEN 1 ELSE 0 END) AS unscannable,
             sum(CASE WHEN outcome = 'failed' THEN 1 ELSE 0 END) AS failed,
             sum(CASE WHEN outcome IS NULL THEN 1 ELSE 0 END) AS unfinished,
             max(done_at) AS last_done_at
        FROM rescan_items WHERE rescan_id IN (SELECT id FROM r) GROUP BY rescan_id
    )
    SELECT r.*, c.total, c.done, c.clean, c.infected, c.unscannable, c.failed, c.unfinished, c.last_done_at
      FROM r LEFT JOIN c ON c.rescan_id = r.id
     ORDER BY r.created_at DESC, r.id DESC`
}

export const GET_RESCAN_SQL = rescanSummarySql('WHERE id = $1')
export const LIST_RESCANS_SQL = rescanSummarySql('ORDER BY created_at DESC, id DESC LIMIT $1')

/**
 * Cancelling: the rescan ($1 now, $2 id), which then unwinds in batches (cursor_id), each in one
 * transaction and in this order: its unfinished uploads in the batch ($3 after, $4 up to) that no
 * other rescan waits for and no worker holds go back to their regular schedule: a clean one its
 * scan time + interval ($1 interval, $2 id), any other none; then its unfinished items in the
 * batch are marked cancelled ($1 id, $2 after, $3 up to).
 */
export const CANCEL_RESCAN_SQL = `
  UPDATE rescans SET state = 'cancelled', cancelled_at = $1, cursor_id = '', lease_owner = NULL, lease_token = NULL, lease_until = NULL
   WHERE id = $2 AND state IN ('running', 'listing')`
export const UNSCHEDULE_CANCELLED_SQL = `
  UPDATE uploads
     SET next_scan_at = CASE WHEN status = 'clean' THEN COALESCE(scanned_at, created_at) + $1 ELSE NULL END
   WHERE id IN (SELECT upload_id FROM rescan_items WHERE rescan_id = $2 AND outcome IS NULL AND ${inRange('upload_id', '$3', '$4')})
     AND status IN (${rescannable}) AND lease_token IS NULL
     AND NOT EXISTS (SELECT 1 FROM rescan_items o WHERE o.upload_id = uploads.id AND o.outcome IS NULL AND o.rescan_id <> $2 AND o.${notCancelled})`
export const CANCEL_ITEMS_SQL = `UPDATE rescan_items SET outcome = 'cancelled' WHERE rescan_id = $1 AND outcome IS NULL AND ${inRange('upload_id', '$2', '$3')}`


/** The values of INSERT_RESCAN_SQL: adoptions list a bucket, id lists are covered at once, other selections batch by batch. */
export function newRescanRow(rescan: { id: string; scope: Record<string, unknown>; createdBy: string; createdAt: number }, selection: RescanSelection): unknown[] {
  const adopt = selection.kind === 'adopt' ? selection : null
  const batched = selection.kind !== 'adopt' && selection.kind !== 'ids'
  const state = selection.kind === 'ids' ? 'running' : 'listing'
  return [rescan.id, JSON.stringify(rescan.scope), rescan.createdBy, rescan.createdAt, state, adopt?.bucket ?? null, adopt?.prefix ?? null, batched ? JSON.stringify(selection) : null, batched ? '' : null]
}
