import { randomBytes } from 'node:crypto'
import pg from 'pg'
import type { Test } from 'tap'

/** The PostgreSQL the tests run against (trust auth on the loopback address by default). */
export const pgUrl = process.env.GW_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

/** Runs one statement on a short-lived connection of its own (not a store's pool). */
export async function pgQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
  const client = new pg.Client({ connectionString: pgUrl })
  await client.connect()
  try {
    return await client.query<R>(sql, values)
  } finally {
    await client.end()
  }
}

/** A schema name no other test uses, dropped with everything in it when the test ends. */
export async function freshSchema(t: Test): Promise<string> {
  const schema = `gw_test_${randomBytes(6).toString('hex')}`
  t.teardown(() => pgQuery(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).then(() => undefined))
  return schema
}
