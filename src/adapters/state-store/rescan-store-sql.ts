import type { RescanRecord, RescanSelection, RescanStore } from '../../ports/rescan-store.ts'
import { nullableString, toRescan } from './row-mapping.ts'
import {
  CANCEL_ITEMS_SQL,
  CANCEL_RESCAN_SQL,
  coverSql,
  GET_RESCAN_SQL,
  INSERT_RESCAN_SQL,
  ITEMS_PAGE_END_SQL,
  LIST_RESCANS_SQL,
  MAKE_DUE_SQL,
  NEXT_BATCH_SQL,
  NOTIFY_DUE_PG_SQL,
  newRescanRow,
  PAGE_END_SQL,
  RESCAN_CURSOR_SQL,
  type StoredSelection,
  UNSCHEDULE_CANCELLED_SQL
} from './rescan-sql.ts'
import { SqlValues } from './shared-sql.ts'
import type { SqlDatabase, SqlHandle, TransactionOptions } from './sql-database.ts'

/**
 * Rescans: created, selected and cancelled a batch of `batchSize` uploads per transaction.
 * Creating and cancelling take turns (the 'rescans' lock): a cancel that ran beside a create could
 * miss the create's new items (not committed yet) and unschedule an upload the new rescan waits for.
 */
export function rescanStoreSql(db: SqlDatabase, batchSize: number, onDue: () => void = () => {}): RescanStore {
  const turns = (now: number): TransactionOptions => ({ now, lock: 'rescans' })

  /**
   * Uploads made due wake idle workers at once instead of at their next poll: on PostgreSQL every
   * replica's, by a notice sent when the transaction commits; on SQLite (one process) through
   * onDue, called by the caller once it has committed. True when the caller must call onDue.
   */
  const madeDue = async (tx: SqlHandle, count: number): Promise<boolean> => {
    if (count === 0) return false
    if (db.dialect !== 'pg') return true
    await tx.rows(NOTIFY_DUE_PG_SQL)
    return false
  }

  /** Covers the next batch of uploads after `after` and makes them due; the rescan runs once none are left. Whether onDue is to be called. */
  const coverBatch = async (tx: SqlHandle, id: string, selection: StoredSelection, after: string, now: number): Promise<boolean> => {
    const [end] = await tx.rows(PAGE_END_SQL, [after, batchSize - 1])
    const upTo = nullableString(end?.id)
    const v = new SqlValues(db.dialect)
    await tx.write(coverSql(id, selection, v, { after, upTo }), v.values)
    const due = await madeDue(tx, await tx.write(MAKE_DUE_SQL, [now, id, after, upTo]))
    await tx.write(RESCAN_CURSOR_SQL, [id, upTo, upTo === null ? 'running' : 'listing'])
    return due
  }

  /** Unwinds the next batch of a cancelled rescan's uploads (see CANCEL_RESCAN_SQL). */
  const unwindBatch = async (tx: SqlHandle, id: string, after: string, intervalMs: number): Promise<void> => {
    const [end] = await tx.rows(ITEMS_PAGE_END_SQL, [id, after, batchSize - 1])
    const upTo = nullableString(end?.id)
    await tx.write(UNSCHEDULE_CANCELLED_SQL, [intervalMs, id, after, upTo])
    await tx.write(CANCEL_ITEMS_SQL, [id, after, upTo])
    await tx.write(RESCAN_CURSOR_SQL, [id, upTo, 'cancelled'])
  }

  const getRescan = async (id: string): Promise<RescanRecord | null> => {
    const [row] = await db.rows(GET_RESCAN_SQL, [id])
    return row ? toRescan(row) : null
  }

  return {
    async createRescan(
      rescan: { id: string; scope: Record<string, unknown>; createdBy: string; createdAt: number },
      selection: RescanSelection
    ): Promise<RescanRecord> {
      const v = new SqlValues(db.dialect)
      // Built first: an invalid selection (RangeError) writes nothing. Ids are covered at once (at
      // most MAX_RESCAN_IDS); other selections batch by batch, the first one here.
      const ids = selection.kind === 'ids' ? coverSql(rescan.id, selection, v) : null
      const row = newRescanRow(rescan, selection)
      const due = await db.transaction(async (tx) => {
        await tx.write(INSERT_RESCAN_SQL, row)
        if (ids !== null) {
          await tx.write(ids, v.values)
          return madeDue(tx, await tx.write(MAKE_DUE_SQL, [rescan.createdAt, rescan.id, '', null]))
        }
        return selection.kind !== 'adopt' && (await coverBatch(tx, rescan.id, selection, '', rescan.createdAt))
      }, turns(rescan.createdAt))
      if (due) onDue()
      return (await getRescan(rescan.id)) as RescanRecord
    },

    getRescan,

    async listRescans(limit: number): Promise<RescanRecord[]> {
      return (await db.rows(LIST_RESCANS_SQL, [limit])).map(toRescan)
    },

    cancelRescan(id: string, now: number, intervalMs: number): Promise<boolean> {
      return db.transaction(async (tx) => {
        if ((await tx.write(CANCEL_RESCAN_SQL, [now, id])) !== 1) return false
        await unwindBatch(tx, id, '', intervalMs)
        return true
      }, turns(now))
    },

    async advanceRescans(now: number, intervalMs: number): Promise<boolean> {
      let due = false
      const more = await db.transaction(async (tx) => {
        const [row] = await tx.rows(NEXT_BATCH_SQL)
        if (!row) return false
        const id = String(row.id)
        const cursor = String(row.cursor_id)
        if (row.state === 'cancelled') await unwindBatch(tx, id, cursor, intervalMs)
        else due = await coverBatch(tx, id, JSON.parse(String(row.selection)) as StoredSelection, cursor, now)
        return true
      }, turns(now))
      if (due) onDue()
      return more
    }
  }
}
