import { Agent, request } from 'node:http'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { sqliteStateStore } from '../../src/adapters/state-store/open-state-store.ts'
import { KiB, MiB } from '../lib/content.ts'
import { metricValue, startGatewayProcess, type GatewayProcess } from '../lib/gateway-process.ts'
import { apiGatewayEnv } from '../lib/gateway-env.ts'
import { round, rssOf } from '../lib/proc.ts'
import { forEachLimit } from '../lib/stats.ts'
import type { Context, Row, Scenario } from '../lib/types.ts'
import { seed } from './status-endpoint.ts'

/** Long enough to outlast the measurement; the processes answer every waiting request (304) as they stop. */
const WAIT_SECONDS = 30

interface Held {
  clients: number
  rssBeforeMiB: number
  rssWaitingMiB: number
  bytesPerClient: number
  /** Seconds until every request was waiting. */
  openSeconds: number
  /** Answers the waiting requests got when the process stopped: status → count. */
  answers: Record<string, number>
}

/**
 * Goal 5's long poll: N clients (1,000; 200 in quick mode), each on its own upload and connection,
 * send GET /v1/uploads/:id?wait=30 with that upload's ETag in If-None-Match, so each waits. The
 * gateway's RSS (from /proc) once all of them wait (gateway_status_waiters = N), less its RSS just
 * before (after reading every ETag once), ÷ N: memory per waiting client. Reference: the bare
 * Fastify route (bench/bare-fastify-server.ts) holding as many requests on a timer. Reported, no goal.
 * GW_MAX_CONNECTIONS is set to N + 100.
 */
export const longPoll: Scenario = {
  id: 8,
  title: 'Long-poll status, waiting clients',
  async run(ctx) {
    const clients = ctx.quick ? 200 : 1000
    ctx.log(`  ${clients} clients waiting on GET /v1/uploads/:id?wait=${WAIT_SECONDS}`)
    const ids = await seed(sqliteStateStore(join(ctx.dir, 's8.db')), clients)
    // The default GW_MAX_CONNECTIONS (1024) leaves too little room for 1,000 long polls next to the
    // bench's own connections (the ETag reads' keep-alive pool, /metrics): set above them, as an operator expecting them would.
    const env = { ...apiGatewayEnv(ctx, 's8'), GW_MAX_CONNECTIONS: String(clients + 100) }

    const gateway = await startGatewayProcess(ctx.resources, env, { label: 's8-gateway', dir: ctx.dir })
    const etags = new Map<string, string>()
    const held = await holdAndMeasure(ctx, gateway, clients, async () => {
      await forEachLimit(ids, 16, async (id) => {
        const res = await fetch(`${gateway.url}/v1/uploads/${id}`)
        await res.arrayBuffer()
        const etag = res.headers.get('etag')
        if (res.status !== 200 || !etag) throw new Error(`GET /v1/uploads/${id} answered ${res.status} without an ETag`)
        etags.set(id, etag)
      })
      return (i) => ({ path: `/v1/uploads/${ids[i]}?wait=${WAIT_SECONDS}`, etag: etags.get(ids[i] as string) as string })
    }, () => metricValue(gateway.url, 'gateway_status_waiters'))

    const bare = await startGatewayProcess(ctx.resources, {}, { label: 's8-bare-fastify', dir: ctx.dir, script: 'bench/bare-fastify-server.ts' })
    const bareHeld = await holdAndMeasure(ctx, bare, clients, async () => {
      const res = await fetch(`${bare.url}/v1/uploads/bare`)
      await res.arrayBuffer()
      const etag = res.headers.get('etag') ?? ''
      return () => ({ path: `/v1/uploads/bare?wait=${WAIT_SECONDS}`, etag })
    }, async () => ((await (await fetch(`${bare.url}/bench/waiters`)).json()) as { waiting: number }).waiting)

    const allAnswered = (h: Held): boolean => (h.answers['304'] ?? 0) + (h.answers['200'] ?? 0) === h.clients
    const row: Row = {
      scenario: 8,
      case: `${clients.toLocaleString('en')} waiting clients, SQLite`,
      metric: 'KiB/client',
      better: 'lower',
      gateway: round(held.bytesPerClient / KiB, 1),
      baseline: round(bareHeld.bytesPerClient / KiB, 1),
      baselineLabel: 'bare Fastify route holding the requests',
      // Floored at 0.01: an RSS delta lost in the noise would make the chart's inverted ratio infinite.
      ratio: Math.max(0.01, round(held.bytesPerClient / Math.max(1, bareHeld.bytesPerClient), 2)),
      goal: null,
      met: null,
      note:
        `RSS ${held.rssBeforeMiB} → ${held.rssWaitingMiB} MiB (bare Fastify ${bareHeld.rssBeforeMiB} → ${bareHeld.rssWaitingMiB} MiB)` +
        (allAnswered(held) ? '' : `; answers on shutdown: ${JSON.stringify(held.answers)}`),
      evidence: `All ${clients} waiting after ${held.openSeconds} s (bare: ${bareHeld.openSeconds} s); each request has its own connection. On shutdown the gateway answered ${JSON.stringify(held.answers)}.`
    }
    return { rows: [row], details: { clients, waitSeconds: WAIT_SECONDS, gateway: held, bare: bareHeld } }
  }
}

/**
 * Prepares (untimed), samples RSS, opens `clients` long polls on their own connections, waits
 * until the target counts them all waiting, samples RSS again, then stops the target (which answers them).
 */
async function holdAndMeasure(
  ctx: Context,
  target: GatewayProcess,
  clients: number,
  prepare: () => Promise<(i: number) => { path: string; etag: string }>,
  waiters: () => Promise<number>
): Promise<Held> {
  const agent = new Agent({ keepAlive: false, maxSockets: Number.POSITIVE_INFINITY })
  const answers: Record<string, number> = {}
  const pending: Array<Promise<void>> = []
  try {
    const poll = await prepare()
    await sleep(200)
    const rssBefore = await steadyRss(target.pid)
    const started = performance.now()
    for (let i = 0; i < clients; i++) {
      const { path, etag } = poll(i)
      pending.push(
        new Promise<void>((resolve) => {
          const url = new URL(path, target.url)
          const req = request({ host: url.hostname, port: url.port, path: `${url.pathname}${url.search}`, agent, headers: { 'if-none-match': etag } }, (res) => {
            res.resume()
            res.on('end', () => {
              const key = String(res.statusCode)
              answers[key] = (answers[key] ?? 0) + 1
              resolve()
            })
          })
          req.on('error', (err) => {
            answers[err.message] = (answers[err.message] ?? 0) + 1
            resolve()
          })
          req.end()
        })
      )
    }
    const deadline = Date.now() + 20_000
    while ((await waiters()) < clients) {
      if (Date.now() > deadline) throw new Error(`only ${await waiters()} of ${clients} requests were waiting after 20 s: ${JSON.stringify(answers)}`)
      await sleep(100)
    }
    const openSeconds = round((performance.now() - started) / 1000, 2)
    await sleep(200)
    const rssWaiting = await steadyRss(target.pid)
    await target.stop()
    await Promise.race([Promise.all(pending), sleep(10_000)])
    return {
      clients,
      rssBeforeMiB: round(rssBefore / MiB, 1),
      rssWaitingMiB: round(rssWaiting / MiB, 1),
      bytesPerClient: Math.max(0, rssWaiting - rssBefore) / clients,
      openSeconds,
      answers
    }
  } finally {
    await target.stop()
    agent.destroy()
    ctx.log(`  ${clients} long polls on ${target.url}: ${JSON.stringify(answers)}`)
  }
}

/** The median of five RSS samples 50 ms apart. */
async function steadyRss(pid: number): Promise<number> {
  const samples: number[] = []
  for (let i = 0; i < 5; i++) {
    samples.push(rssOf(pid) ?? 0)
    await sleep(50)
  }
  return samples.sort((a, b) => a - b)[2] as number
}
