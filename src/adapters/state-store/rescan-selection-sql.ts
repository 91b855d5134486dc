import type { RescanSelection } from '../../ports/rescan-store.ts'
import { inRange, rescannable, type SqlValues } from './shared-sql.ts'

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
