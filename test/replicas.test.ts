import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { objectSha256, sha256 } from './helpers/bucket-checks.ts'
import { startChildGateway, type ChildGateway } from './helpers/child-gateway.ts'
import { startClamd } from './helpers/clamd.ts'
import { checkFinalState, type Tracked } from './helpers/final-state.ts'
import { waitForStatus } from './helpers/gateway.ts'
import { PRODUCTION, QUARANTINE, s3PgEnv } from './helpers/gateway-env.ts'
import { createBuckets, s3ClientFor, startMoto } from './helpers/moto.ts'
import { freshSchema, pgQuery } from './helpers/postgres.ts'
import { startSlowClamd } from './helpers/slow-clamd.ts'
import { contentOf, forEachLimit, sendUpload, TERMINAL, waitAllTerminal, type Kind } from './helpers/upload-load.ts'
import { exitWhenDone } from './helpers/exit-guard.ts'

exitWhenDone()

// Two gateway processes on one PostgreSQL schema and one S3: claims are exclusive, and a replica
// that shuts down in the middle of a long scan hands it over at once instead of when its lease ends.
const [moto, clamd] = await Promise.all([startMoto(), startClamd()])
t.teardown(() => Promise.all([moto.stop(), clamd.stop()]))
await createBuckets(moto.endpoint, QUARANTINE, PRODUCTION)
const s3 = s3ClientFor(moto.endpoint)
t.teardown(() => s3.destroy())

/** Upload ids this process logged a finished scan for. */
function scannedBy(gw: ChildGateway): Set<string> {
  const ids = new Set<string>()
  for (const line of gw.output().split('\n')) {
    if (line.includes('"msg":"scanned"')) ids.add(/"uploadId":"([0-9a-f]{32})"/.exec(line)?.[1] ?? '')
  }
  ids.delete('')
  return ids
}

interface ScanRow {
  upload_id: string
  started_at: string
  duration_ms: string
  outcome: string
}

/** Pairs of scans of the same upload whose time spans overlap. */
function overlaps(rows: ScanRow[]): string[] {
  const found: string[] = []
  const byUpload = Map.groupBy(rows, (r) => r.upload_id)
  for (const [id, scans] of byUpload) {
    const spans = scans.map((s) => [Number(s.started_at), Number(s.started_at) + Number(s.duration_ms)] as const).sort((a, b) => a[0] - b[0])
    for (let i = 1; i < spans.length; i++) {
      if ((spans[i] as readonly [number, number])[0] < (spans[i - 1] as readonly [number, number])[1]) found.push(`${id}: ${JSON.stringify(spans)}`)
    }
  }
  return found
}

t.test('the same upload is never scanned by two replicas at once', async (t) => {
  const schema = await freshSchema(t)
  const env = { ...s3PgEnv({ s3Endpoint: moto.endpoint, schema, clamd: clamd.url }), GW_ROLE: 'all', GW_SCAN_CONCURRENCY: '8', GW_SCAN_LEASE_MS: '30000' }
  const replicas = await Promise.all([startChildGateway(t, env), startChildGateway(t, env)])
  const tracked = new Map<string, Tracked>()
  const refused: string[] = []
  const started = Date.now()
  // 200 small uploads, as fast as 16 clients can send them, alternating between the replicas.
  await forEachLimit(Array.from({ length: 200 }), 16, async (_, n) => {
    const kind: Kind = n % 5 === 0 ? 'eicar' : n % 5 === 1 ? 'marker' : 'clean'
    const data = contentOf(kind, 500 + Math.floor(Math.random() * 8000))
    const res = await sendUpload((replicas[n % 2] as ChildGateway).url, data)
    if (res.status === 202) tracked.set(res.json.id, { kind, sha256: sha256(data) })
    else refused.push(`HTTP ${res.status} ${JSON.stringify(res.json)}`)
  })
  const sentMs = Date.now() - started
  t.same(refused, [], 'all 200 uploads accepted')
  const views = await waitAllTerminal(() => (replicas[0] as ChildGateway).url, [...tracked.keys()], { timeoutMs: 60_000 })
  const settledMs = Date.now() - started
  await checkFinalState(t, { s3, schema, tracked, views })

  const { rows } = await pgQuery<ScanRow>(`SELECT upload_id, started_at, duration_ms, outcome FROM "${schema}".scans`)
  const perUpload = Map.groupBy(rows, (r) => r.upload_id)
  t.same(
    [...tracked.keys()].filter((id) => perUpload.get(id)?.length !== 1).map((id) => `${id}: ${perUpload.get(id)?.length ?? 0} scans`),
    [],
    'each upload has exactly one scan row'
  )
  t.same(overlaps(rows), [], 'no two scans of one upload overlap in time')
  const [byA, byB] = replicas.map(scannedBy) as [Set<string>, Set<string>]
  t.same([...byA].filter((id) => byB.has(id)), [], 'no upload was scanned by both replicas')
  t.ok(byA.size > 0 && byB.size > 0, 'both replicas took a share of the work')
  t.comment(`replicas: 200 uploads sent in ${sentMs} ms, all terminal after ${settledMs} ms; scans by A ${byA.size}, by B ${byB.size}; ${rows.length} scan rows`)
})

t.test('SIGTERM during a long scan hands it over to the other replica well within the lease', async (t) => {
  const slow = await startSlowClamd(20_000)
  t.teardown(() => slow.close())
  const schema = await freshSchema(t)
  const base = { ...s3PgEnv({ s3Endpoint: moto.endpoint, schema, clamd: clamd.url }), GW_SCAN_LEASE_MS: '30000' }
  // A scans with a clamd that answers only after 20 s.
  const a = await startChildGateway(t, { ...base, GW_CLAMD: slow.url, GW_SHUTDOWN_GRACE_MS: '1000' })
  const data = contentOf('clean', 50_000)
  const res = await sendUpload(a.url, data)
  t.equal(res.status, 202)
  const id = String(res.json.id)
  await waitForStatus(a.url, id, ['scanning'], { timeoutMs: 10_000 })

  const b = await startChildGateway(t, base)
  await sleep(2_000)
  // While A holds the lease, B (idle, polling every 100 ms) must leave the upload alone.
  const held = await pgQuery<{ status: string; lease_owner: string }>(`SELECT status, lease_owner FROM "${schema}".uploads WHERE id = $1`, [id])
  t.equal(held.rows[0]?.status, 'scanning', 'still being scanned by A')
  t.match(held.rows[0]?.lease_owner, new RegExp(`:${a.child.pid}:`), 'A still holds the lease')
  t.notOk(b.output().includes(id), 'B has not touched it')
  t.equal(slow.scans.filter((s) => !s.probe).length, 1, 'one scan under way, at the slow clamd')

  const exited = once(a.child, 'exit')
  const termAt = Date.now()
  a.child.kill('SIGTERM')
  const done = await waitForStatus(b.url, id, TERMINAL, { timeoutMs: 15_000 })
  const handoverMs = Date.now() - termAt
  t.equal(done.status, 'clean', 'B scanned and promoted it')
  t.ok(handoverMs < 10_000, `clean ${handoverMs} ms after SIGTERM (the lease is 30 s)`)
  const [code] = await exited
  t.equal(code, 0, 'A exited 0')
  t.match(a.output(), /lease given back/, 'A gave the lease back')
  t.ok(slow.scans.find((s) => !s.probe)?.closedEarly, "A closed its clamd connection instead of waiting for the answer")
  t.ok(scannedBy(b).has(id), 'B logged the scan')
  t.equal(await objectSha256(s3, PRODUCTION, id), sha256(data), 'the production copy holds the uploaded bytes')

  const { rows } = await pgQuery<ScanRow>(`SELECT upload_id, started_at, duration_ms, outcome FROM "${schema}".scans WHERE upload_id = $1 ORDER BY id`, [id])
  t.same(
    rows.map((r) => r.outcome),
    ['error', 'clean'],
    "A's stopped try, then B's scan"
  )
  t.same(overlaps(rows), [], "B's scan started after A's try ended")
  t.comment(`handover: clean ${handoverMs} ms after SIGTERM; A's try lasted ${rows[0]?.duration_ms} ms`)
})
