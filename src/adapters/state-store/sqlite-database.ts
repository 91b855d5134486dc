import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite'
import { StateUnavailableError } from '../../ports/state-database.ts'
import type { Row } from './row-mapping.ts'
import { applyMigrations, type SqlDatabase, type SqlHandle, type TransactionOptions } from './sql-database.ts'
import { migrations } from './sqlite-migrations.ts'
import { sqliteStatements } from './sqlite-statements.ts'
import { sqliteChangeTriggers } from './upload-change-columns.ts'
import { WalFlusher } from './wal-flusher.ts'

/**
 * `full`: a durable commit is flushed to disk before the call that made it resolves (a power loss
 * loses nothing answered), by an fsync off the event loop (WalFlusher). `normal`: commits are
 * flushed at checkpoints only; a process crash loses nothing, a power loss or OS crash may lose the
 * last commits.
 */
export type SqliteSynchronous = 'full' | 'normal'

/** What a commit changed, for its notices. */
interface Notice {
  ids: string[]
  due: boolean
}

/** The uploads a committed write changed, and whether one of them became pending. */
export type UploadsChanged = (ids: readonly string[], due: boolean) => void

/**
 * The embedded engine: one SQLite file through node:sqlite (built into Node 24, no native build).
 * WAL, its commits flushed to disk by an fsync on the thread pool before they are answered
 * (SqliteSynchronous), so a committed upload survives a power loss. SQLite serialises writers:
 * BEGIN IMMEDIATE makes a multi-statement change atomic.
 * It serves one process, so its clock is the only one: the lease clock gw_now() of the shared SQL
 * is the `now` the caller passed (see at()).
 *
 * One connection serves every call, and a transaction's function awaits between its statements:
 * while a transaction is open, other calls wait their turn (#acquire) rather than run inside it.
 * Statements themselves run synchronously, so a call with nothing to wait for runs at once.
 */
export class SqliteDatabase implements SqlDatabase {
  readonly dialect = 'sqlite' as const
  readonly statements = sqliteStatements
  readonly #db: DatabaseSync
  /** Prepared once and reused: status polls and claims run these statements all the time. */
  readonly #prepared = new Map<string, StatementSync>()
  /** The time of the statement running, for gw_now(); set just around it. */
  #clock: number | null = null
  /** A transaction (or close) holds the connection; the calls waiting for it, in order. */
  #busy = false
  readonly #waiting: (() => void)[] = []
  readonly #free = this.#handle(null, false)
  /** Uploads written since the last commit (collected by the temporary triggers, see migrate()). */
  readonly #changed = new Set<string>()
  /** One of them became pending. */
  #due = false
  readonly #onUploadsChanged: UploadsChanged
  /** null: commits are not flushed one by one (`normal`, or a database in memory). */
  readonly #flusher: WalFlusher | null
  /** total_changes() when the last flush was asked for: a statement outside a transaction that changed rows needs one. */
  #changesFlushed = 0

  /** onUploadsChanged: called with the uploads each committed write changed (the in-process change notices). */
  constructor(path: string, { onUploadsChanged = () => {}, synchronous = 'full' }: { onUploadsChanged?: UploadsChanged; synchronous?: SqliteSynchronous } = {}) {
    this.#onUploadsChanged = onUploadsChanged
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true })
    this.#flusher = synchronous === 'full' && path !== ':memory:' ? new WalFlusher(path) : null
    this.#db = new DatabaseSync(path, { timeout: 5000 })
    // NORMAL either way: with `full` the fsync FULL would do on the event loop is WalFlusher's, off it.
    this.#db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;')
    this.#db.function('gw_now', { deterministic: false }, () => {
      if (this.#clock === null) throw new Error('gw_now() used by a statement run without the time of its call')
      return this.#clock
    })
    // PostgreSQL's LEAST, used by the shared SQL (SQLite's own is the two-argument min()).
    this.#db.function('least', { deterministic: true }, (a, b) => (Number(a) <= Number(b) ? a : b))
    this.#db.function('gw_upload_changed', { deterministic: false }, (id, due) => {
      this.#changed.add(String(id))
      if (Number(due) === 1) this.#due = true
      return null
    })
  }

  rows(sql: string, values?: unknown[]): Promise<Row[]> {
    return this.#free.rows(sql, values)
  }

  write(sql: string, values?: unknown[]): Promise<number> {
    return this.#free.write(sql, values)
  }

  exec(sql: string): Promise<void> {
    return this.#free.exec(sql)
  }

  at(now: number, { durable = true }: { durable?: boolean } = {}): SqlHandle {
    return this.#handle(now, false, durable)
  }

  /** BEGIN IMMEDIATE takes the write lock at once, so the statements in fn see and change one state. */
  async transaction<T>(fn: (tx: SqlHandle) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    await this.#acquire()
    let result: T
    let notice: Notice | null
    try {
      this.#run(() => this.#db.exec('BEGIN IMMEDIATE'))
      try {
        result = await fn(this.#handle(options.now ?? null, true))
        this.#run(() => this.#db.exec('COMMIT'))
        notice = this.#settle(true)
      } catch (err) {
        this.#settle(false)
        try {
          this.#db.exec('ROLLBACK')
        } catch {
          // Nothing to roll back (the COMMIT failed and ended it, or the database is closed).
        }
        throw err
      }
    } finally {
      this.#release()
    }
    // Others use the connection meanwhile; this call resolves, and its notices go, once its commit
    // is on disk. One that need not be is flushed with the next that must, and asks for no flush.
    if (options.durable === false) {
      if (this.#flusher && this.#db.isOpen) this.#changesFlushed = this.#totalChanges()
      this.#publish(notice)
    } else await this.#flushThen(notice)
    return result
  }

  async migrate(): Promise<void> {
    await this.transaction((tx) => applyMigrations(tx, migrations, this.statements.versionsTable))
    const columns = await this.rows("SELECT name FROM pragma_table_info('uploads')")
    await this.exec(sqliteChangeTriggers(columns.map((c) => String(c.name))))
  }

  async ping(): Promise<void> {
    await this.rows('SELECT 1')
  }

  async close(): Promise<void> {
    await this.#acquire()
    try {
      await this.#flusher?.close()
      if (this.#db.isOpen) this.#db.close()
    } finally {
      this.#release()
    }
  }

  /**
   * Statements with gw_now() answering `clock`; `owned`: inside the transaction that holds the
   * connection; `durable: false`: each resolves without waiting for its flush (see at()).
   */
  #handle(clock: number | null, owned: boolean, durable = true): SqlHandle {
    // A statement outside a transaction commits on its own: its notices go once it is on disk.
    let notice: Notice | null = null
    const run = <T>(fn: () => T): T => {
      if (owned) return this.#at(clock, fn)
      let committed = false
      try {
        const result = this.#at(clock, fn)
        committed = true
        return result
      } finally {
        notice = this.#settle(committed)
      }
    }
    const call = async <T>(fn: () => T): Promise<T> => {
      if (owned) return run(fn)
      let result: T
      if (!this.#busy) result = run(fn)
      else {
        await this.#acquire()
        try {
          result = run(fn)
        } finally {
          this.#release()
        }
      }
      const committed = notice
      notice = null
      // A statement that committed changes of its own resolves once they are on disk, unless it need
      // not be: then it is flushed with the next that must, and asks for no flush.
      if (this.#flusher && this.#db.isOpen && this.#totalChanges() !== this.#changesFlushed) {
        if (durable) await this.#flushThen(committed)
        else {
          this.#changesFlushed = this.#totalChanges()
          this.#publish(committed)
        }
      } else this.#publish(committed)
      return result
    }
    return {
      rows: (sql, values = []) => call(() => this.#statement(sql).all(...(values as SQLInputValue[]))),
      write: (sql, values = []) => call(() => Number(this.#statement(sql).run(...(values as SQLInputValue[])).changes)),
      exec: (sql) => call(() => this.#db.exec(sql))
    }
  }

  /** Flushes what was committed (with `full`), then sends the commit's notices: nobody acts on a commit before it is on disk. */
  async #flushThen(notice: Notice | null): Promise<void> {
    try {
      if (!this.#flusher || !this.#db.isOpen) return
      this.#changesFlushed = this.#totalChanges()
      await this.#flusher.flush().catch((err: unknown) => {
        throw new StateUnavailableError(`state store: ${(err as Error).message}`, { cause: err })
      })
    } finally {
      this.#publish(notice)
    }
  }

  #publish(notice: Notice | null): void {
    if (notice) this.#onUploadsChanged(notice.ids, notice.due)
  }

  #totalChanges(): number {
    return Number((this.#statement('SELECT total_changes() AS n').get() as { n: number }).n)
  }

  /** Runs fn (synchronous) with gw_now() answering `clock`; its SQLite errors as StateUnavailableError. */
  #at<T>(clock: number | null, fn: () => T): T {
    this.#clock = clock
    try {
      return this.#run(fn)
    } finally {
      this.#clock = null
    }
  }

  /** The notices of what was committed (sent by #publish), or null: nothing changed, or it was rolled back. */
  #settle(committed: boolean): Notice | null {
    if (this.#changed.size === 0) return null
    const ids = [...this.#changed]
    const due = this.#due
    this.#changed.clear()
    this.#due = false
    return committed ? { ids, due } : null
  }

  async #acquire(): Promise<void> {
    if (!this.#busy) {
      this.#busy = true
      return
    }
    // The connection is handed over with #busy left set (see #release).
    await new Promise<void>((resolve) => this.#waiting.push(resolve))
  }

  #release(): void {
    const next = this.#waiting.shift()
    if (next) next()
    else this.#busy = false
  }

  /** Shared SQL is written with $1 placeholders; SQLite binds ?1 by number just the same. */
  #statement(sql: string): StatementSync {
    let statement = this.#prepared.get(sql)
    if (!statement) {
      statement = this.#db.prepare(sql.replace(/\$(\d+)/g, '?$1'))
      this.#prepared.set(sql, statement)
    }
    return statement
  }

  /** SQLite errors (disk full, locked past the busy timeout, closed) mean "try again later" to callers. */
  #run<T>(fn: () => T): T {
    try {
      return fn()
    } catch (err) {
      throw new StateUnavailableError(`state store: ${(err as Error).message}`, { cause: err })
    }
  }
}
