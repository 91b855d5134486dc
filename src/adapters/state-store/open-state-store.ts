import type { StateStore } from '../../ports/state-store.ts'
import type { UploadChanges } from '../../ports/upload-changes.ts'
import { adoptionSql } from './adoption-sql.ts'
import { historySql } from './history-sql.ts'
import { jobQueueSql } from './job-queue-sql.ts'
import { outboxSql } from './outbox-sql.ts'
import { PgDatabase, type PgDatabaseOptions } from './pg-database.ts'
import { PgUploadChanges } from './pg-upload-changes.ts'
import { rescanStoreSql } from './rescan-store-sql.ts'
import type { SqlDatabase } from './sql-database.ts'
import { SqliteDatabase, type SqliteSynchronous } from './sqlite-database.ts'
import { uploadActionsSql } from './upload-actions-sql.ts'
import { UploadChangeRegistry } from './upload-change-registry.ts'
import { uploadIntakeSql } from './upload-intake-sql.ts'

/** Uploads per batch of a rescan's selection or cancellation, and rows per retention statement. */
const DEFAULT_BATCH_SIZE = 5_000

export interface BatchOptions {
  /** Uploads a rescan covers or unwinds per transaction (see advanceRescans), rows pruned per statement. */
  batchSize?: number
}

export type PgStateStoreOptions = PgDatabaseOptions & BatchOptions

/**
 * The state store the configuration names: `sqlite:<path>` for the embedded one, otherwise a
 * PostgreSQL URL (its schema and pool size from `pg`).
 */
export function openStateStore(url: string, pg: Omit<PgStateStoreOptions, 'url'>, sqlite: SqliteStateStoreOptions = {}): StateStore {
  return url.startsWith('sqlite:') ? sqliteStateStore(url.slice('sqlite:'.length), { ...pg, ...sqlite }) : pgStateStore({ ...pg, url })
}

export type SqliteStateStoreOptions = BatchOptions & { synchronous?: SqliteSynchronous }

/** One SQLite file (':memory:' for none), for one process: its change notices stay in the process. */
export function sqliteStateStore(path: string, options: SqliteStateStoreOptions = {}): StateStore {
  const changes = new UploadChangeRegistry()
  const onUploadsChanged = (ids: readonly string[], due: boolean): void => {
    changes.publish(ids)
    if (due) changes.publishDue()
  }
  // Uploads a rescan made due (bookkeeping that the triggers do not announce) wake this process's workers.
  const db = new SqliteDatabase(path, { onUploadsChanged, ...(options.synchronous ? { synchronous: options.synchronous } : {}) })
  return stateStoreOver(db, changes, options, () => changes.publishDue())
}

/** PostgreSQL, shared by replicas: change notices through LISTEN/NOTIFY. */
export function pgStateStore(options: PgStateStoreOptions): StateStore {
  const { url, schema, applicationName } = options
  return stateStoreOver(new PgDatabase(options), new PgUploadChanges({ url, schema, ...(applicationName ? { applicationName } : {}) }), options)
}

/** Every port's adapter over one database; their methods use no `this`, so they combine as they are. */
function stateStoreOver(db: SqlDatabase, changes: UploadChanges & { close?(): Promise<void> }, { batchSize = DEFAULT_BATCH_SIZE }: BatchOptions, onDue?: () => void): StateStore {
  return {
    migrate: () => db.migrate(),
    ping: () => db.ping(),
    close: async () => {
      await changes.close?.()
      await db.close()
    },
    subscribe: (id, listener) => changes.subscribe(id, listener),
    onUploadDue: (listener) => changes.onUploadDue(listener),
    listenerCount: () => changes.listenerCount(),
    onAnyChange: (listener) => changes.onAnyChange(listener),
    listeningEpoch: () => changes.listeningEpoch(),
    ...uploadIntakeSql(db),
    ...jobQueueSql(db),
    ...uploadActionsSql(db),
    ...rescanStoreSql(db, batchSize, onDue),
    ...adoptionSql(db),
    ...outboxSql(db),
    ...historySql(db, batchSize)
  }
}
