import type { StateDatabase } from '../../ports/state-database.ts'
import type { DialectStatements } from './dialect-statements.ts'
import type { Row } from './row-mapping.ts'
import type { Dialect } from './shared-sql.ts'

/**
 * What the state-store adapters need of an engine, so each port's adapter is written once for
 * SQLite and PostgreSQL. Statements use numbered placeholders ($1); every failure of the engine
 * (closed, locked, unreachable, timed out) comes out as StateUnavailableError.
 */
export interface SqlHandle {
  /** The rows a statement returns. */
  rows(sql: string, values?: unknown[]): Promise<Row[]>
  /** How many rows a write changed. */
  write(sql: string, values?: unknown[]): Promise<number>
  /** A script of several statements, without values (migrations). */
  exec(sql: string): Promise<void>
}

export interface TransactionOptions {
  /**
   * The time of the call, for the lease clock gw_now(): on SQLite (one process) it is this `now`;
   * PostgreSQL reads its own clock and ignores it.
   */
  now?: number
  /**
   * Changes under this name take turns across replicas (a PostgreSQL advisory lock for the
   * transaction). SQLite's BEGIN IMMEDIATE already lets one writer in at a time.
   */
  lock?: string
  /** No statement timeout, client- or server-side (migrations, which may rewrite a whole table). */
  untimed?: boolean
  /**
   * false: the commit returns before it is flushed to disk, and is flushed with the next durable
   * commit. A process crash loses nothing; a power loss or OS crash may lose it (never a later
   * durable commit without it: the log is written in order). For writes whose loss crash repair
   * covers (an upload's intent: the orphan sweeper finds its object by listing). Default true.
   */
  durable?: boolean
}

export interface SqlDatabase extends SqlHandle, StateDatabase {
  readonly dialect: Dialect
  /** The statements that differ between the engines. */
  readonly statements: DialectStatements
  /**
   * A handle whose statements read gw_now() as `now` (see TransactionOptions.now). `durable: false`
   * as for a transaction, for single statements whose loss crash repair covers (claims and lease
   * renewals: a lost one is an expired lease); PostgreSQL commits a single statement durably
   * whatever this says (turning that off would take a transaction, i.e. more round trips).
   */
  at(now: number, options?: { durable?: boolean }): SqlHandle
  /**
   * Runs fn in one transaction, its statements through the handle it gets (never through the
   * database itself, which waits for the transaction on SQLite): committed when fn resolves,
   * rolled back when it throws, its error passed on as it is.
   */
  transaction<T>(fn: (tx: SqlHandle) => Promise<T>, options?: TransactionOptions): Promise<T>
}

/**
 * Applies the migrations the database has not seen yet, in order, in the transaction `tx`; the
 * caller holds the engine's lock so concurrent starts apply each one once. Forward-only: a schema
 * newer than the last migration was written by a newer gateway, and start-up refuses it.
 */
export async function applyMigrations(tx: SqlHandle, migrations: readonly { version: number; sql: string }[], versionsTable: string): Promise<void> {
  await tx.exec(versionsTable)
  const [row] = await tx.rows('SELECT max(version) AS v FROM schema_migrations')
  const current = Number(row?.v ?? 0)
  const latest = migrations.at(-1)?.version ?? 0
  if (current > latest) {
    throw new Error(`the database schema is at version ${current}, newer than this gateway knows (${latest}): upgrade the gateway`)
  }
  for (const m of migrations) {
    if (m.version <= current) continue
    await tx.exec(m.sql)
    await tx.write('INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)', [m.version, Date.now()])
  }
}
