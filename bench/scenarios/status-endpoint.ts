import autocannon from 'autocannon'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import pg from 'pg'
import { pgStateStore, sqliteStateStore } from '../../src/adapters/state-store/open-state-store.ts'
import type { StateStore } from '../../src/ports/state-store.ts'
import { profileWhile } from '../lib/cpu-profile.ts'
import { startGatewayProcess, type GatewayProcess } from '../lib/gateway-process.ts'
import { apiGatewayEnv } from '../lib/gateway-env.ts'
import { CpuMeter, cpuText, round } from '../lib/proc.ts'
import { forEachLimit, range } from '../lib/stats.ts'
import type { Context, ProfileJob, Row, Scenario } from '../lib/types.ts'

const CONNECTIONS = 100
const RPS_GOAL = 10_000

interface Load {
  requestsPerSecond: number
  p50Ms: number
  p99Ms: number
  requests: number
  non2xx: number
  errors: number
  cpuSeconds: Record<string, number>
}

/**
 * GET /v1/uploads/:id with 100 connections (autocannon, in the bench process) on random ids of
 * existing uploads, half of them clean, on SQLite and on PostgreSQL. Goal 5's baseline: a bare
 * Fastify route (its own process, as the gateway) serving from memory the JSON the gateway served
 * for a clean upload, with an ETag. Also kept: the absolute goal of 10,000 req/s on SQLite, next
 * to a bare node:http server answering a fixed body of the same size.
 */
export const statusEndpoint: Scenario = {
  id: 5,
  title: 'Status endpoint',
  async run(ctx) {
    const uploads = ctx.quick ? 200 : 1000
    const seconds = ctx.quick ? 1 : 8
    ctx.log(`  ${uploads} uploads, ${CONNECTIONS} connections, ${seconds} s per target`)

    const bare = await startGatewayProcess(ctx.resources, {}, { label: 's5-bare', dir: ctx.dir, script: 'bench/bare-server.ts' })
    let bareLoad: Load
    try {
      bareLoad = await load(ctx, bare, () => '/v1/uploads/bare', seconds)
    } finally {
      await bare.stop()
    }

    const sqlitePath = join(ctx.dir, 's5.db')
    const sqliteIds = await seed(sqliteStateStore(sqlitePath), uploads)
    const sqliteEnv = apiGatewayEnv(ctx, 's5')
    const sqlite = await measure(ctx, sqliteEnv, sqliteIds, seconds, 's5-sqlite')

    // Goal 5's baseline: a bare Fastify route serving, from memory, the JSON the gateway served.
    const fastifyBare = await startGatewayProcess(ctx.resources, { BENCH_BARE_BODY: sqlite.body }, { label: 's5-bare-fastify', dir: ctx.dir, script: 'bench/bare-fastify-server.ts' })
    let fastifyLoad: Load
    try {
      fastifyLoad = await load(ctx, fastifyBare, () => '/v1/uploads/bare', seconds)
    } finally {
      await fastifyBare.stop()
    }

    const schema = `bench_${randomBytes(6).toString('hex')}`
    const dropSchema = ctx.resources.defer(`schema ${schema}`, () => dropPgSchema(ctx.pgUrl, schema))
    let postgres: Load
    try {
      const pgIds = await seed(pgStateStore({ url: ctx.pgUrl, schema, poolSize: 4 }), uploads)
      postgres = await measure(ctx, { ...sqliteEnv, GW_DATABASE_URL: ctx.pgUrl, GW_DATABASE_SCHEMA: schema }, pgIds, seconds, 's5-pg')
    } finally {
      await dropSchema()
    }

    const rows: Row[] = []
    for (const [store, l] of [['SQLite', sqlite], ['PostgreSQL', postgres]] as const) {
      const clean = l.non2xx === 0 && l.errors === 0
      const ratio = l.requestsPerSecond / fastifyLoad.requestsPerSecond
      rows.push({
        scenario: 5,
        case: `${store}, ${CONNECTIONS} pollers`,
        metric: 'req/s',
        better: 'higher',
        gateway: Math.round(l.requestsPerSecond),
        baseline: Math.round(fastifyLoad.requestsPerSecond),
        baselineLabel: 'bare Fastify route, JSON from memory',
        ratio: round(ratio, 2),
        goal: '≥ 0.8',
        goalRatio: 0.8,
        met: ratio >= 0.8 && clean,
        note: clean ? `p50 ${l.p50Ms} ms (bare Fastify ${fastifyLoad.p50Ms} ms)` : `${l.non2xx} non-2xx answers, ${l.errors} errors`,
        evidence: `CPU seconds over ${seconds} s: gateway side ${cpuText(l.cpuSeconds)}; bare Fastify side ${cpuText(fastifyLoad.cpuSeconds)} (autocannon runs in the bench process).`
      })
      if (store === 'SQLite') {
        rows.push({
          scenario: 5,
          case: `${store}, ${CONNECTIONS} connections, absolute`,
          metric: 'req/s',
          better: 'higher',
          gateway: Math.round(l.requestsPerSecond),
          baseline: Math.round(bareLoad.requestsPerSecond),
          baselineLabel: 'bare node:http',
          ratio: round(l.requestsPerSecond / bareLoad.requestsPerSecond, 2),
          goal: '≥ 10,000 req/s',
          goalRatio: RPS_GOAL / bareLoad.requestsPerSecond,
          met: l.requestsPerSecond >= RPS_GOAL && clean,
          note: `bare node:http answering a fixed body: ${Math.round(bareLoad.requestsPerSecond)} req/s on the same machine`,
          evidence: `bare node:http side ${cpuText(bareLoad.cpuSeconds)}.`
        })
      }
      rows.push({
        scenario: 5,
        case: `${store}, p99`,
        metric: 'ms',
        better: 'lower',
        gateway: l.p99Ms,
        baseline: fastifyLoad.p99Ms,
        baselineLabel: 'bare Fastify route',
        ratio: round(l.p99Ms / Math.max(fastifyLoad.p99Ms, 0.01), 2),
        goal: null,
        met: null
      })
    }

    const profileJobs: ProfileJob[] = []
    if (ctx.profile && rows[0]?.met === false) {
      profileJobs.push({
        what: 'scenario 5',
        estimateSeconds: 8,
        run: async () => {
          // The SQLite file of the measurement is still in the scratch directory.
          const gateway = await startGatewayProcess(ctx.resources, sqliteEnv, { label: 'profile-s5', dir: ctx.profileDir, cpuProfile: true })
          try {
            const title = `scenario 5, gateway on SQLite, ${CONNECTIONS} connections for 4 s`
            return await profileWhile(gateway, title, join(ctx.profileDir, 'profile-s5.cpuprofile'), () => load(ctx, gateway, randomPath(sqliteIds), 4))
          } finally {
            await gateway.stop()
          }
        }
      })
    }
    return { rows, profileJobs, details: { uploads, seconds, connections: CONNECTIONS, bare: bareLoad, bareFastify: fastifyLoad, sqlite, postgres } }
  }
}

/** The load on the gateway, and the JSON it served for a clean upload (the bare Fastify route serves it). */
async function measure(ctx: Context, env: Record<string, string>, ids: string[], seconds: number, label: string): Promise<Load & { body: string }> {
  const gateway = await startGatewayProcess(ctx.resources, env, { label, dir: ctx.dir })
  try {
    let body = ''
    for (const id of ids) {
      const probe = await fetch(`${gateway.url}/v1/uploads/${id}`)
      body = await probe.text()
      if (probe.status !== 200) throw new Error(`${label}: GET /v1/uploads/:id answered ${probe.status}: ${body}`)
      if ((JSON.parse(body) as { status: string }).status === 'clean') break
    }
    return { ...(await load(ctx, gateway, randomPath(ids), seconds)), body }
  } finally {
    await gateway.stop()
  }
}

function randomPath(ids: string[]): () => string {
  return () => `/v1/uploads/${ids[Math.floor(Math.random() * ids.length)]}`
}

async function load(ctx: Context, target: GatewayProcess, path: () => string, seconds: number): Promise<Load> {
  const options = {
    url: target.url,
    connections: CONNECTIONS,
    requests: [{ method: 'GET' as const, setupRequest: (req: autocannon.Request) => ({ ...req, path: path() }) }]
  }
  // A short warm-up first: JIT and connection set-up are not what is measured.
  await autocannon({ ...options, duration: Math.max(0.5, seconds / 5) })
  const cpu = new CpuMeter({ server: target.pid })
  const result = await autocannon({ ...options, duration: seconds })
  return {
    requestsPerSecond: result.requests.total / result.duration,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    requests: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors,
    cpuSeconds: cpu.read()
  }
}

/** Inserts `count` uploads through the store's own methods; half of them end clean. */
export async function seed(store: StateStore, count: number): Promise<string[]> {
  try {
    await store.migrate()
    const now = Date.now()
    const ids = range(count).map(() => randomBytes(16).toString('hex'))
    await forEachLimit(ids, 4, async (id) => {
      await store.insertUpload({ id, objectKey: id, size: 48_213, sha256: randomBytes(32).toString('hex'), filename: 'scan.pdf', contentType: 'application/pdf', createdAt: now })
    })
    const claims = await store.claim('bench-seed', Math.floor(count / 2), 60_000, now)
    const verdict = { result: 'clean' as const, signature: null, reason: null, engine: 'ClamAV 1.4.6', signatureVersion: null }
    await forEachLimit(claims, 4, async (claim) => {
      await store.update(claim, { status: 'clean', verdict, scannedAt: now, resetAttempts: true }, now)
    })
    return ids
  } finally {
    await store.close()
  }
}

async function dropPgSchema(url: string, schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
  } finally {
    await client.end()
  }
}
