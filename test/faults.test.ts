import { setTimeout as sleep } from 'node:timers/promises'
import type { S3Client } from '@aws-sdk/client-s3'
import t, { type Test } from 'tap'
import { listKeys, objectSha256, sha256 } from './helpers/bucket-checks.ts'
import { startClamd } from './helpers/clamd.ts'
import { startFaultyProxy } from './helpers/faulty-proxy.ts'
import { checkFinalState, type Tracked } from './helpers/final-state.ts'
import { startGateway } from './helpers/gateway.ts'
import { MiB, PRODUCTION, QUARANTINE, s3PgEnv } from './helpers/gateway-env.ts'
import { createBuckets, listIncompleteUploads, s3ClientFor, startMoto, type Moto } from './helpers/moto.ts'
import { freshSchema, pgQuery, pgUrl } from './helpers/postgres.ts'
import { contentOf, forEachLimit, sendUpload, waitAllTerminal, type Kind } from './helpers/upload-load.ts'
import { exitWhenDone } from './helpers/exit-guard.ts'

exitWhenDone()

// Fault injection on a gateway running on S3 (moto) and PostgreSQL: clamd, S3 and PostgreSQL each
// break for a few seconds in the middle of a batch. An outage may refuse uploads (503) and delay
// verdicts, but never loses an accepted upload, never leaves an orphan, never promotes unscanned bytes.

// In-process gateways read credentials from the SDK's chain, i.e. this process's environment.
process.env.AWS_ACCESS_KEY_ID ??= 'test'
process.env.AWS_SECRET_ACCESS_KEY ??= 'test'
const clamd = await startClamd()
t.teardown(() => clamd.stop())

/** Each case gets its own moto, so bucket listings hold only its own uploads. */
async function freshS3(t: Test): Promise<{ moto: Moto; s3: S3Client }> {
  const moto = await startMoto()
  t.teardown(() => moto.stop())
  await createBuckets(moto.endpoint, QUARANTINE, PRODUCTION)
  const s3 = s3ClientFor(moto.endpoint)
  t.teardown(() => s3.destroy())
  return { moto, s3 }
}

/** Mostly small clean files, an eighth above the 5 MiB part size (multipart), a quarter each EICAR and marker. */
function plan(n: number): { kind: Kind; size: number } {
  const r = n % 8
  if (r === 0) return { kind: 'clean', size: 5.5 * MiB + Math.floor(Math.random() * MiB) }
  if (r === 3 || r === 6) return { kind: 'eicar', size: 2000 + n }
  if (r === 5 || r === 7) return { kind: 'marker', size: 2000 + n }
  return { kind: 'clean', size: 4096 + Math.floor(Math.random() * 60_000) }
}

interface Result {
  n: number
  /** Sent as Idempotency-Key, so a refused upload can be retried safely. */
  key: string
  /** The bytes of a refused upload, kept to retry it. */
  data?: Buffer
  kind: Kind
  sha256: string
  status: number
  code?: string
  id?: string
  ms: number
  error?: string
}

/** Sends planned uploads from `lanes` clients into `results`, each pausing between uploads, until `stop()` or `max` were sent. */
async function sendUntil(url: string, results: Result[], o: { lanes: number; max: number; pauseMs: number; stop: () => boolean }): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: o.lanes }, async () => {
      while (!o.stop() && next < o.max) {
        const n = next++
        const { kind, size } = plan(n)
        const data = contentOf(kind, size)
        const base = { n, kind, sha256: sha256(data), key: `upload-${n}` }
        const started = Date.now()
        try {
          const res = await sendUpload(url, data, { timeoutMs: 30_000, idempotencyKey: base.key })
          results.push({ ...base, status: res.status, ms: res.ms, id: res.status === 202 ? res.json.id : undefined, code: res.json?.error?.code, ...(res.status === 503 ? { data } : {}) })
        } catch (err) {
          results.push({ ...base, status: 0, ms: Date.now() - started, error: String(err) })
        }
        await sleep(o.pauseMs)
      }
    })
  )
}

/**
 * Waits (bounded) until the batch has had a clean and an infected upload accepted, so the fault that
 * follows meets uploads already in flight on a busy machine too (a fixed delay once let the fault
 * start before the first upload was answered, and the run accepted nothing).
 */
async function untilBothKindsAccepted(results: Result[], timeoutMs = 20_000): Promise<number> {
  const deadline = Date.now() + timeoutMs
  const accepted = (clean: boolean): boolean => results.some((r) => r.status === 202 && (r.kind === 'clean') === clean)
  while (!(accepted(true) && accepted(false)) && Date.now() < deadline) await sleep(50)
  return results.filter((r) => r.status === 202).length
}

function trackedOf(results: Result[]): Map<string, Tracked> {
  return new Map(results.filter((r) => r.status === 202).map((r) => [r.id as string, { kind: r.kind, sha256: r.sha256 }]))
}

t.test('clamd stopped for a while: uploads are still accepted and wait as pending, then all get their verdicts', async (t) => {
  const { moto, s3 } = await freshS3(t)
  const schema = await freshSchema(t)
  const proxy = await startFaultyProxy(clamd.port)
  t.teardown(() => proxy.stop())
  const gw = await startGateway(t, {
    ...s3PgEnv({ s3Endpoint: moto.endpoint, schema, clamd: `tcp://127.0.0.1:${proxy.port}` }),
    GW_CLAMD_CONNECT_TIMEOUT_MS: '500',
    GW_SCAN_LEASE_MS: '3000'
  })
  const tracked = new Map<string, Tracked>()
  const refused: string[] = []
  let n = 0
  const send = async (): Promise<string | null> => {
    const kind: Kind = (['clean', 'clean', 'eicar', 'marker'] as const)[n++ % 4] as Kind
    const data = contentOf(kind, 3000 + n)
    const res = await sendUpload(gw.url, data)
    if (res.status !== 202) {
      refused.push(`HTTP ${res.status} ${JSON.stringify(res.json)}`)
      return null
    }
    tracked.set(res.json.id, { kind, sha256: sha256(data) })
    return res.json.id as string
  }

  // A first batch goes through normally (the end of it may still be scanning when clamd stops).
  await forEachLimit(Array.from({ length: 12 }), 4, async () => void (await send()))
  await proxy.setMode('refuse')
  const outageEnds = Date.now() + 3_000
  const during: string[] = []
  const seen = { pending: 0, scanning: 0 }
  const badDuring: string[] = []
  // While clamd is gone: keep uploading, and keep checking that nothing made during the outage
  // gets a verdict, reaches production, or has its unreachable-scanner tries counted.
  const look = async (): Promise<void> => {
    for (const id of during) {
      const view = await (await fetch(`${gw.url}/v1/uploads/${id}`)).json()
      if ((view.status === 'pending' || view.status === 'scanning') && view.verdict === null && !('object' in view)) seen[view.status as 'pending' | 'scanning']++
      else badDuring.push(`${id} during the outage: ${JSON.stringify(view)}`)
    }
    for (const key of await listKeys(s3, PRODUCTION)) if (during.includes(key)) badDuring.push(`${key} reached production during the outage`)
    const { rows } = await pgQuery(`SELECT id, attempts FROM "${schema}".uploads WHERE id = ANY($1) AND attempts > 1`, [during])
    for (const row of rows) badDuring.push(`${row.id} counted ${row.attempts} tries of an unreachable scanner`)
  }
  while (Date.now() < outageEnds) {
    const id = await send()
    if (id) during.push(id)
    await look()
    await sleep(100)
  }
  await look()
  await proxy.setMode('pass')
  const recovered = Date.now()
  const views = await waitAllTerminal(() => gw.url, [...tracked.keys()], { timeoutMs: 30_000 })
  const recoveryMs = Date.now() - recovered

  t.same(refused, [], 'every upload was accepted, during the outage too')
  t.ok(during.length >= 5, `${during.length} uploads made during the outage`)
  t.same(badDuring, [], 'uploads made during the outage stayed pending (or claimed for a try): no verdict, nothing promoted, tries not counted')
  const stats = await checkFinalState(t, { s3, schema, tracked, views })
  t.same(stats.strays, [], 'quarantine holds nothing but the infected uploads')
  t.ok(stats.errorRows > 0, 'tries against the stopped clamd are in the audit trail')
  t.comment(`clamd outage: ${tracked.size} uploads (${during.length} during the 3 s outage), seen ${seen.pending}x pending and ${seen.scanning}x scanning while it lasted`)
  t.comment(`all verdicts ${recoveryMs} ms after clamd came back; ${stats.errorRows} failed tries recorded, at most ${stats.maxScans} per upload, ${stats.rescanned} uploads rescanned`)
})

t.test('S3 resetting, then hanging, during a batch: 503 or 202, and every 202 ends right', async (t) => {
  const { moto, s3 } = await freshS3(t)
  const schema = await freshSchema(t)
  const proxy = await startFaultyProxy(moto.port)
  t.teardown(() => proxy.stop())
  const env = {
    ...s3PgEnv({ s3Endpoint: `http://127.0.0.1:${proxy.port}`, schema, clamd: clamd.url }),
    GW_SCAN_LEASE_MS: '2000',
    // Tries that hit the fault count; the budget is not what this test is about.
    GW_SCAN_MAX_ATTEMPTS: '20',
    // The worker's sweeper retries the cleanups that failed during the fault.
    GW_ORPHAN_AFTER: '30s',
    GW_ORPHAN_SWEEP_INTERVAL_MS: '200'
  }
  // Uploads go to an api process; the worker starts when S3 breaks, so the scans and promotions
  // of everything uploaded so far are sure to run into the fault.
  const api = await startGateway(t, { ...env, GW_ROLE: 'api' })
  const results: Result[] = []
  let faultsOver = Infinity
  let acceptedBefore = 0
  const faults = (async () => {
    acceptedBefore = await untilBothKindsAccepted(results)
    const faultStart = Date.now()
    await proxy.setMode('reset')
    await startGateway(t, { ...env, GW_ROLE: 'worker', GW_SCAN_CONCURRENCY: '4' })
    await sleep(Math.max(0, faultStart + 2_000 - Date.now()))
    // On a busy machine the worker's first scans may come late: the resets last (bounded) until one
    // of them has failed on the fault, so the retries below are really exercised.
    for (let i = 0; i < 150; i++) {
      const { rows } = await pgQuery(`SELECT count(*) AS n FROM "${schema}".scans WHERE outcome = 'error'`)
      if (Number(rows[0]?.n) > 0) break
      await sleep(100)
    }
    await proxy.setMode('hang')
    await sleep(2_000)
    await proxy.setMode('pass')
    faultsOver = Date.now()
  })()
  // Uploads go on for a while after S3 is back, so the batch has uploads after the fault too.
  await sendUntil(api.url, results, { lanes: 3, max: 80, pauseMs: 100, stop: () => Date.now() > faultsOver + 1_500 })
  await faults
  const tracked = trackedOf(results)
  const refused = results.filter((r) => r.status === 503 && r.code === 'GW_STORE_UNAVAILABLE')
  const other = results.filter((r) => r.status !== 202 && !(r.status === 503 && r.code === 'GW_STORE_UNAVAILABLE'))
  t.same(other, [], 'every upload got 202 or 503 GW_STORE_UNAVAILABLE, within 30 s')
  t.ok(refused.length > 0, `the fault reached uploads: ${refused.length} refused with 503`)

  const views = await waitAllTerminal(() => api.url, [...tracked.keys()], { timeoutMs: 45_000 })
  // Cleanups that failed while S3 was failing (a delete, a multipart abort) were recorded: the
  // sweeper retries them. Wait (bounded) until nothing is left, then check.
  const refusedSha = new Set(refused.map((r) => r.sha256))
  const leftovers = async (): Promise<{ incomplete: Awaited<ReturnType<typeof listIncompleteUploads>>; strays: string[] }> => {
    const infected = new Set([...tracked].filter(([, i]) => i.kind !== 'clean').map(([id]) => id))
    const strays = (await listKeys(s3, QUARANTINE)).filter((k) => !infected.has(k))
    return { incomplete: await listIncompleteUploads(s3, QUARANTINE, PRODUCTION), strays }
  }
  let left = await leftovers()
  const leftAtFirst = left
  for (let i = 0; i < 100 && (left.incomplete.length > 0 || left.strays.length > 0); i++) {
    await sleep(200)
    left = await leftovers()
  }
  const stats = await checkFinalState(t, { s3, schema, tracked, views })
  t.ok(stats.errorRows > 0, 'scans hit the fault, and were retried to the right verdict')
  const incomplete = await listIncompleteUploads(s3, QUARANTINE, PRODUCTION)
  t.same(
    incomplete.filter((u) => u.bucket !== QUARANTINE || tracked.has(u.key)),
    [],
    'no incomplete multipart upload in production, nor for an accepted upload'
  )
  t.same(
    incomplete.filter((u) => u.bucket === QUARANTINE && !tracked.has(u.key)),
    [],
    'no incomplete multipart upload left in quarantine by refused uploads (the sweeper retried the failed aborts)'
  )
  const orphans: string[] = []
  const unexplained: string[] = []
  for (const key of stats.strays) {
    const sha = await objectSha256(s3, QUARANTINE, key)
    ;(sha && refusedSha.has(sha) ? orphans : unexplained).push(key)
  }
  t.same(unexplained, [], 'quarantine holds nothing but infected uploads')
  t.same(orphans, [], 'no object left in quarantine by an upload refused with 503 (the sweeper retried the failed deletes)')
  t.comment(`left by refused uploads right after the fault: ${leftAtFirst.strays.length} objects, ${leftAtFirst.incomplete.length} incomplete multipart uploads; after the sweeps: ${orphans.length} and ${incomplete.length}`)
  const slowest = Math.max(...results.map((r) => r.ms))
  t.comment(`S3 fault: ${results.length} sent, ${tracked.size} accepted (${acceptedBefore} before the fault began), ${refused.length} refused (503), slowest answer ${slowest} ms`)
  t.comment(`${stats.errorRows} failed tries recorded, at most ${stats.maxScans} tries per upload, ${stats.rescanned} scanned to a verdict twice`)
})

t.test('S3 hanging for longer than the upload idle timeout: the upload ends within that bound, nothing is left', async (t) => {
  const { moto, s3 } = await freshS3(t)
  const schema = await freshSchema(t)
  const proxy = await startFaultyProxy(moto.port)
  t.teardown(() => proxy.stop())
  const gw = await startGateway(t, {
    ...s3PgEnv({ s3Endpoint: `http://127.0.0.1:${proxy.port}`, schema, clamd: clamd.url }),
    GW_ROLE: 'api',
    GW_UPLOAD_IDLE_TIMEOUT_MS: '2000',
    GW_STORE_TIMEOUT_MS: '1000'
  })
  await proxy.setMode('hang')
  const started = Date.now()
  // The S3 client's own timeouts are long (5 s connect, 60 s idle, SDK retries on top): the
  // store timeout ends the upload first, with an answer.
  const answer = await sendUpload(gw.url, contentOf('clean', 10_000), { timeoutMs: 20_000 }).catch((err: unknown) => ({ error: String(err) }))
  const ms = Date.now() - started
  t.ok(ms < 10_000, `the upload request ended after ${ms} ms: a hung S3 does not hold it for ever`)
  t.match(answer, { status: 503, json: { error: { code: 'GW_STORE_UNAVAILABLE' } } }, 'the client is told 503 GW_STORE_UNAVAILABLE')
  t.ok(Number((answer as { headers?: Record<string, string> }).headers?.['retry-after']) > 0, 'with Retry-After')
  await proxy.setMode('pass')
  t.same(await listKeys(s3, QUARANTINE), [], 'nothing stored in quarantine')
  t.same(await listIncompleteUploads(s3, QUARANTINE), [], 'no incomplete multipart upload')
  const { rows } = await pgQuery(`SELECT id FROM "${schema}".uploads`)
  t.same(rows, [], 'nothing recorded')
  t.comment(`S3 hang: the upload ended after ${ms} ms with ${JSON.stringify(answer).slice(0, 200)}`)
})

t.test('PostgreSQL connections dropped during a batch: 503 or 202, nothing orphaned, nothing lost', async (t) => {
  const { moto, s3 } = await freshS3(t)
  const schema = await freshSchema(t)
  const direct = new URL(pgUrl)
  const proxy = await startFaultyProxy(Number(direct.port || 5432))
  t.teardown(() => proxy.stop())
  const viaProxy = new URL(pgUrl)
  viaProxy.port = String(proxy.port)
  const gw = await startGateway(t, {
    ...s3PgEnv({ s3Endpoint: moto.endpoint, schema, clamd: clamd.url, databaseUrl: viaProxy.toString() }),
    GW_SCAN_LEASE_MS: '2000',
    // An upload whose commit could not be confirmed nor abandoned is settled by the sweeper this soon.
    GW_ORPHAN_AFTER: '10s',
    GW_ORPHAN_SWEEP_INTERVAL_MS: '200'
  })
  const results: Result[] = []
  let faultsOver = Infinity
  let acceptedBefore = 0
  const faults = (async () => {
    acceptedBefore = await untilBothKindsAccepted(results)
    await proxy.setMode('reset') // drops every pooled connection, and every new one
    await sleep(2_000)
    await proxy.setMode('pass')
    faultsOver = Date.now()
  })()
  await sendUntil(gw.url, results, { lanes: 3, max: 80, pauseMs: 100, stop: () => Date.now() > faultsOver + 1_500 })
  await faults
  const tracked = trackedOf(results)
  const refused = results.filter((r) => r.status === 503 && r.code === 'GW_STATE_UNAVAILABLE')
  const other = results.filter((r) => r.status !== 202 && !(r.status === 503 && r.code === 'GW_STATE_UNAVAILABLE'))
  t.same(other, [], 'every upload got 202 or 503 GW_STATE_UNAVAILABLE')
  t.ok(refused.length > 0, `the fault reached uploads: ${refused.length} refused with 503`)

  // The clients retry what was refused, with the same Idempotency-Key: an upload recorded although
  // its client got 503 (the INSERT's answer and the lookup after it both lost) is answered with its id.
  let recovered = 0
  for (const r of refused) {
    // As a client does: while the first request's fate is unknown (409 in progress, until the sweeper
    // settles it) or the store still fails (503), wait Retry-After and try again (bounded).
    let again = await sendUpload(gw.url, r.data as Buffer, { idempotencyKey: r.key })
    for (let i = 0; i < 30 && (again.status === 503 || again.json?.error?.code === 'GW_IDEMPOTENCY_IN_PROGRESS'); i++) {
      await sleep(1_000)
      again = await sendUpload(gw.url, r.data as Buffer, { idempotencyKey: r.key })
    }
    if (again.status !== 202) {
      other.push({ ...r, data: undefined, status: again.status, code: again.json?.error?.code })
      continue
    }
    tracked.set(again.json.id, { kind: r.kind, sha256: r.sha256 })
    recovered++
  }
  t.same(other, [], 'every retry with its Idempotency-Key was accepted')
  const views = await waitAllTerminal(() => gw.url, [...tracked.keys()], { timeoutMs: 45_000 })
  const { rows } = await pgQuery<{ id: string; sha256: string; status: string }>(`SELECT id, sha256, status FROM "${schema}".uploads`)
  const recorded = new Set(rows.map((r) => r.id))
  t.same(
    [...tracked.keys()].filter((id) => !recorded.has(id)),
    [],
    'a record for every accepted upload'
  )
  // An INSERT that committed but whose answer was lost is looked up before its object is discarded:
  // found, the upload is accepted; when the lookup fails too, the client gets 503 and the record
  // and object both stay (the upload is scanned all the same).
  const refusedSha = new Set(refused.map((r) => r.sha256))
  const extra = rows.filter((r) => !tracked.has(r.id))
  t.same(
    extra.filter((r) => !refusedSha.has(r.sha256)),
    [],
    'no record the test never sent'
  )
  t.same(
    extra.map((r) => `${r.id} (${r.status})`),
    [],
    'no record the clients do not know: a refused upload that was recorded all the same was answered with its id on retry'
  )
  const stats = await checkFinalState(t, { s3, schema, tracked, views })
  t.same(stats.strays, [], 'the objects of refused uploads were discarded: quarantine holds nothing but infected uploads')
  t.same(await listIncompleteUploads(s3, QUARANTINE, PRODUCTION), [], 'no incomplete multipart upload left behind')
  const duplicates = rows.length - new Set(rows.map((r) => r.sha256)).size
  t.equal(duplicates, 0, 'no file recorded twice')
  t.comment(`PostgreSQL fault: ${results.length} sent, ${tracked.size} accepted (${acceptedBefore} before the fault began), ${refused.length} refused (503) and retried (${recovered} accepted on retry), ${extra.length} recorded but unknown to the clients`)
  t.comment(`${stats.errorRows} failed tries recorded, at most ${stats.maxScans} tries per upload, ${stats.rescanned} scanned to a verdict twice`)
})
