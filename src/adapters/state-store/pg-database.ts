import pg from 'pg'
import { StateUnavailableError } from '../../ports/state-database.ts'
import { migrations } from './pg-migrations.ts'
import { pgStatements } from './pg-statements.ts'
import type { Row } from './row-mapping.ts'
import { applyMigrations, type SqlDatabase, type SqlHandle, type TransactionOptions } from './sql-database.ts'

/** setTimeout's largest delay (about 24 days): "no client-side timeout" for pg, which takes 0 as "the pool's". */
const UNTIMED_MS = 2 ** 31 - 1

export interface PgDatabaseOptions {
  url: string
  /** Every table lives in this schema (created by migrate()). */
  schema: string
  poolSize: number
  connectTimeoutMs?: number
  statementTimeoutMs?: number
  /** Shown in pg_stat_activity. */
  applicationName?: string
}

/**
 * The shared engine: PostgreSQL through a pg.Pool, so several gateway replicas can claim from one
 * queue. Leases are on the database's clock, gw_now() (migration 4), whatever `now` callers pass.
 */
export class PgDatabase implements SqlDatabase {
  readonly dialect = 'pg' as const
  readonly statements = pgStatements
  readonly #pool: pg.Pool
  readonly #schema: string
  #closing: Promise<void> | undefined

  constructor(options: PgDatabaseOptions) {
    // Validated, not just quoted: it goes into the startup options and into CREATE SCHEMA.
    if (!/^[a-z_][a-z0-9_]*$/.test(options.schema)) throw new Error(`invalid PostgreSQL schema name: ${JSON.stringify(options.schema)}`)
    this.#schema = options.schema
    const statementTimeoutMs = options.statementTimeoutMs ?? 10_000
    const { connectionString, urlOptions } = splitOptions(options.url)
    this.#pool = new pg.Pool({
      connectionString,
      // search_path as a startup parameter: set before any query on every connection, reconnects included.
      options: [urlOptions, `-c search_path="${options.schema}"`].filter(Boolean).join(' '),
      max: options.poolSize,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
      // The server cancels slow statements; the client-side timeout covers a server that went silent.
      statement_timeout: statementTimeoutMs,
      query_timeout: statementTimeoutMs + 1_000,
      keepAlive: true,
      application_name: options.applicationName
    })
    // An idle client whose connection dies (server restart, killed backend) is dropped by the pool;
    // without a listener the 'error' event would crash the process. The next query opens a new one.
    this.#pool.on('error', () => {})
  }

  readonly #pooled = handleOver((sql, values) => this.#guard(() => this.#pool.query<Row>(sql, values)))

  rows(sql: string, values?: unknown[]): Promise<Row[]> {
    return this.#pooled.rows(sql, values)
  }

  write(sql: string, values?: unknown[]): Promise<number> {
    return this.#pooled.write(sql, values)
  }

  exec(sql: string): Promise<void> {
    return this.#pooled.exec(sql)
  }

  at(_now: number, _options?: { durable?: boolean }): SqlHandle {
    return this
  }

  /** On a client of its own, which is destroyed rather than reused if anything failed. */
  async transaction<T>(fn: (tx: SqlHandle) => Promise<T>, { lock, untimed = false, durable = true }: TransactionOptions = {}): Promise<T> {
    const client = await this.#guard(() => this.#pool.connect())
    // A checked-out client has no pool error listener: a connection lost between statements must not crash us.
    const onError = (): void => {}
    client.on('error', onError)
    const query = (sql: string, values?: unknown[]): Promise<pg.QueryResult<Row>> => {
      // query_timeout per query is read by pg but missing from its types.
      const config: pg.QueryConfig & { query_timeout?: number } = { text: sql, values, ...(untimed ? { query_timeout: UNTIMED_MS } : {}) }
      return this.#guard(() => client.query<Row>(config))
    }
    const tx = handleOver(query)
    let failed = false
    try {
      await query('BEGIN')
      if (untimed) await query('SET LOCAL statement_timeout = 0')
      if (!durable) await query('SET LOCAL synchronous_commit = off')
      // Held to the end of the transaction: others taking the same lock queue here.
      if (lock !== undefined) await query('SELECT pg_advisory_xact_lock(hashtext($1))', [`quarantine-gateway:${lock}:${this.#schema}`])
      const result = await fn(tx)
      await query('COMMIT')
      return result
    } catch (err) {
      failed = true
      await client.query('ROLLBACK').catch(() => {})
      throw err
    } finally {
      client.off('error', onError)
      client.release(failed)
    }
  }

  async migrate(): Promise<void> {
    // A migration may rewrite or index every row of a big table: it runs untimed, once, at start-up.
    // Replicas starting together queue on the lock, so only one creates the schema (a concurrent
    // CREATE SCHEMA IF NOT EXISTS can still fail on the unique name) and applies each migration.
    await this.transaction(async (tx) => {
      await tx.exec(`CREATE SCHEMA IF NOT EXISTS "${this.#schema}"`)
      await applyMigrations(tx, migrations, this.statements.versionsTable)
    }, { untimed: true, lock: 'migrate' })
  }

  async ping(): Promise<void> {
    await this.rows('SELECT 1')
  }

  async close(): Promise<void> {
    this.#closing ??= this.#pool.end()
    await this.#closing
  }

  /** Connection and query failures (refused, terminated, timed out, pool closed) mean "try again later" to callers. */
  async #guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (err) {
      throw new StateUnavailableError(`state store: ${(err as Error).message}`, { cause: err })
    }
  }
}

/** The handle over one way of querying: the pool, or a transaction's own client. */
function handleOver(query: (sql: string, values?: unknown[]) => Promise<pg.QueryResult<Row>>): SqlHandle {
  return {
    rows: async (sql, values) => (await query(sql, values)).rows,
    write: async (sql, values) => (await query(sql, values)).rowCount ?? 0,
    exec: async (sql) => {
      await query(sql)
    }
  }
}

/**
 * pg lets a connection string's own ?options= replace the options we pass (search_path with
 * them): take it out of the URL and keep it in front of ours instead.
 */
function splitOptions(connectionString: string): { connectionString: string; urlOptions: string | null } {
  if (!/[?&]options=/.test(connectionString)) return { connectionString, urlOptions: null }
  const url = new URL(connectionString)
  const urlOptions = url.searchParams.get('options')
  url.searchParams.delete('options')
  return { connectionString: url.toString(), urlOptions }
}
