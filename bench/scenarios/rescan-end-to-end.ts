import { ListObjectsV2Command } from '@aws-sdk/client-s3'
import { createReadStream } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { startClamd, type Clamd } from '../../test/helpers/clamd.ts'
import { KiB, MiB, uniqueLabel, writeContentFile } from '../lib/content.ts'
import { profileWhile, type ProfileSummary } from '../lib/cpu-profile.ts'
import { getAndScan } from '../lib/direct-pipeline.ts'
import type { ScanRunResult } from '../lib/raw-clamd.ts'
import { startGatewayProcess, type GatewayProcess } from '../lib/gateway-process.ts'
import { s3Env } from '../lib/gateway-env.ts'
import { CpuMeter, cpuText, findPids, round, rssOf } from '../lib/proc.ts'
import { emptyBucket } from '../lib/s3.ts'
import { forEachLimit, range } from '../lib/stats.ts'
import type { Context, Row, Scenario } from '../lib/types.ts'
import { postUpload, uploadAgent } from '../lib/upload-client.ts'

/** Scans at once per clamd endpoint, on both sides (GW_CLAMD_MAX_PER_ENDPOINT; clamd runs 4 threads). */
const PER_ENDPOINT = 4
/**
 * Sizes, in a cycle of 32: 30 × 64 KiB, one of 192 KiB and one of 1 MiB, a mean of 100,352 bytes.
 * What a file costs is a fixed part plus a part per byte, so a mix whose mean is 100 KB runs at
 * the rate of 100 KB files and the projection for a million of them needs no model of size.
 */
const CYCLE = [...Array.from({ length: 30 }, () => 64 * KiB), 192 * KiB, MiB]
const ADMIN = 'bench-admin-key-0123456789abcdef'
const AS_ADMIN = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }
const MILLION = 1_000_000

interface RescanView {
  id: string
  state: string
  total: number
  done: number
  clean: number
  infected: number
  unscannable: number
  failed: number
}

/**
 * N unique objects (64 KiB to 1 MiB, mean 100 KB) are stored through the gateway and scanned
 * clean; then, with fresh clamds (no cached verdicts), a gateway (GW_ROLE=all, GW_RESCAN_SHARE=1:
 * nothing else is due, so rescans may take every slot) is given `POST /v1/rescans {"scope":
 * {"all": true}}` and objects/s is measured from that request until GET /v1/rescans/:id says done.
 * Baseline: GET each object from the production bucket streamed into clamd INSTREAM, the same
 * concurrency on the same number of fresh clamds. With 1 and 2 clamd endpoints.
 */
export const rescanEndToEnd: Scenario = {
  id: 7,
  title: 'Rescan end to end',
  async run(ctx) {
    // Quick mode (CI) checks that it runs: half a cycle of sizes, so its mean is not 100 KB.
    const files = ctx.quick ? 16 : 320
    const dir = join(ctx.dir, 's7')
    await mkdir(dir, { recursive: true })
    const paths = range(files).map((i) => join(dir, `${i}.bin`))
    const sizes = range(files).map((i) => CYCLE[i % CYCLE.length] as number)
    const meanSize = sizes.reduce((a, b) => a + b, 0) / files
    await forEachLimit(paths, 8, (path, i) => writeContentFile(path, sizes[i] as number, uniqueLabel('rescan-e2e')))
    ctx.log(`  ${files} objects of 64 KiB to 1 MiB (mean ${Math.round(meanSize / 1000)} KB), stored and scanned clean first`)

    const env = {
      ...s3Env(ctx),
      GW_ROLE: 'all',
      GW_DATABASE_URL: `sqlite:${join(ctx.dir, 's7.db')}`,
      GW_ADMIN_KEYS: ADMIN,
      GW_CLAMD_MAX_PER_ENDPOINT: String(PER_ENDPOINT)
    }
    try {
      const storeSeconds = await store(ctx, env, paths, sizes)
      const keys = await listKeys(ctx)
      if (keys.length !== files) throw new Error(`${keys.length} objects in production, ${files} stored`)

      const rows: Row[] = []
      const runs: Record<string, unknown>[] = []
      const rates: Record<number, { gateway: number; baseline: number }> = {}
      for (const endpoints of [1, 2]) {
        const concurrency = PER_ENDPOINT * endpoints
        ctx.log(`  ${endpoints} clamd endpoint${endpoints > 1 ? 's' : ''}, ${concurrency} scans at once`)
        const baseline = await withClamds(ctx, endpoints, async (clamds) => {
          const cpu = new CpuMeter({ moto: ctx.moto.pid, ...clamdPids(clamds) })
          const result = await getAndScan(
            ctx.s3,
            clamds.map((c) => c.url),
            ctx.buckets.production,
            keys,
            concurrency
          )
          return { ...result, cpuSeconds: cpu.read() }
        })
        const { profile: _unused, ...gateway } = await withClamds(ctx, endpoints, (clamds) => rescanAll(ctx, env, clamds, concurrency, files))
        const ratio = gateway.objectsPerSecond / baseline.filesPerSecond
        const failures = baseline.failures + (files - gateway.view.clean)
        rates[endpoints] = { gateway: gateway.objectsPerSecond, baseline: baseline.filesPerSecond }
        const perEndpoint = gateway.objectsPerSecond / endpoints
        const scaling = endpoints > 1 && rates[1] ? `; ×${round(gateway.objectsPerSecond / rates[1].gateway, 2)} the 1-endpoint rate (baseline ×${round(baseline.filesPerSecond / rates[1].baseline, 2)})` : ''
        rows.push({
          scenario: 7,
          case: `${files} objects, ${endpoints} clamd endpoint${endpoints > 1 ? 's' : ''} × ${PER_ENDPOINT} scans`,
          metric: 'objects/s',
          better: 'higher',
          gateway: round(gateway.objectsPerSecond, 1),
          baseline: round(baseline.filesPerSecond, 1),
          baselineLabel: 'GET → INSTREAM',
          ratio: round(ratio, 2),
          goal: '≥ 0.9',
          goalRatio: 0.9,
          met: ratio >= 0.9 && failures === 0,
          note:
            `a million ${Math.round(meanSize / 1000)} KB objects: ${hours(MILLION / gateway.objectsPerSecond)} (${hours(MILLION / perEndpoint)} per endpoint; baseline ${hours(MILLION / baseline.filesPerSecond)})${scaling}` +
            (failures ? `; ${failures} objects not clean` : ''),
          evidence: `CPU seconds over the rescan's ${round(gateway.seconds, 2)} s: ${cpuText(gateway.cpuSeconds)}; baseline over ${round(baseline.seconds, 2)} s: ${cpuText(baseline.cpuSeconds)}.`
        })
        runs.push({ endpoints, concurrency, baseline: roundResult(baseline), gateway: { ...gateway, objectsPerSecond: round(gateway.objectsPerSecond, 2) } })
      }
      // Profiled at once, not after every scenario: the stored objects are gone once this one ends.
      const profiles: ProfileSummary[] = []
      if (ctx.profile && rows[0]?.met === false) {
        ctx.log('  profiling the gateway during a rescan, 1 clamd endpoint')
        const title = `scenario 7, gateway during a {"all": true} rescan of ${files} objects, 1 clamd endpoint × ${PER_ENDPOINT}`
        const profiled = await withClamds(ctx, 1, (clamds) => rescanAll(ctx, env, clamds, PER_ENDPOINT, files, title))
        if (profiled.profile) profiles.push(profiled.profile)
      }
      return { rows, profiles, details: { files, meanSize, sizes: '30 × 64 KiB, 1 × 192 KiB, 1 × 1 MiB in every 32', storeSeconds, perEndpoint: PER_ENDPOINT, runs } }
    } finally {
      await emptyBucket(ctx.s3, ctx.buckets.production)
      await emptyBucket(ctx.s3, ctx.buckets.quarantine)
    }
  }
}

/** Uploads every file and waits until the gateway's queue is empty (every upload scanned). */
async function store(ctx: Context, env: Record<string, string>, paths: string[], sizes: number[]): Promise<number> {
  const started = performance.now()
  // Not measured: a short poll interval only shortens the wait for the first scans.
  const gateway = await startGatewayProcess(ctx.resources, { ...env, GW_CLAMD: ctx.clamdUrl, GW_POLL_INTERVAL_MS: '50' }, { label: 's7-store', dir: ctx.dir })
  const agent = uploadAgent(8)
  try {
    const waiting = new Set<string>()
    await forEachLimit(paths, 8, async (path, i) => {
      const answer = await postUpload(gateway.url, agent, sizes[i] as number, createReadStream(path))
      if (answer.status !== 202 || !answer.id) throw new Error(`upload refused: ${answer.status} ${answer.error ?? ''}`)
      waiting.add(answer.id)
    })
    // Each upload's own status (gateway_queue_depth is refreshed only now and then).
    const deadline = Date.now() + 5 * 60_000
    while (waiting.size > 0) {
      if (Date.now() > deadline) throw new Error(`${waiting.size} stored uploads were not scanned within 5 minutes`)
      await sleep(200)
      await forEachLimit([...waiting], 8, async (id) => {
        const res = await fetch(`${gateway.url}/v1/uploads/${id}`, { headers: AS_ADMIN })
        const { status } = (await res.json()) as { status: string }
        if (status === 'clean') waiting.delete(id)
        else if (status !== 'pending' && status !== 'scanning') throw new Error(`upload ${id} ended ${status}`)
      })
    }
  } finally {
    agent.destroy()
    await gateway.stop()
  }
  return round((performance.now() - started) / 1000, 2)
}

async function listKeys(ctx: Context): Promise<string[]> {
  const keys: string[] = []
  let ContinuationToken: string | undefined
  do {
    const out = await ctx.s3.send(new ListObjectsV2Command({ Bucket: ctx.buckets.production, ContinuationToken }))
    for (const o of out.Contents ?? []) if (o.Key) keys.push(o.Key)
    ContinuationToken = out.NextContinuationToken
  } while (ContinuationToken)
  return keys
}

/**
 * A gateway on these clamds (past their first EICAR check), one `{"all": true}` rescan timed until
 * done. With `profileAs`, the gateway's CPU is profiled over the same window (a separate run).
 */
async function rescanAll(ctx: Context, env: Record<string, string>, clamds: Clamd[], concurrency: number, files: number, profileAs?: string) {
  const label = profileAs ? 'profile-s7' : `s7-rescan-${clamds.length}`
  const gateway = await startGatewayProcess(
    ctx.resources,
    { ...env, GW_CLAMD: clamds.map((c) => c.url).join(','), GW_SCAN_CONCURRENCY: String(concurrency), GW_RESCAN_SHARE: '1' },
    { label, dir: profileAs ? ctx.profileDir : ctx.dir, cpuProfile: profileAs !== undefined }
  )
  try {
    await ready(gateway)
    const cpu = new CpuMeter({ gateway: gateway.pid, moto: ctx.moto.pid, ...clamdPids(clamds) })
    const started = performance.now()
    let view: RescanView | undefined
    const timed = async (): Promise<void> => {
      const res = await fetch(`${gateway.url}/v1/rescans`, { method: 'POST', headers: AS_ADMIN, body: JSON.stringify({ scope: { all: true } }) })
      if (res.status !== 202) throw new Error(`POST /v1/rescans answered ${res.status}: ${await res.text()}`)
      view = (await res.json()) as RescanView
      const deadline = Date.now() + 10 * 60_000
      // Polled every 100 ms: the rate is read to within a tenth of a second of the end.
      while (view.state !== 'done') {
        if (view.state === 'cancelled') throw new Error('the rescan was cancelled')
        if (Date.now() > deadline) throw new Error(`the rescan did not finish within 10 minutes: ${JSON.stringify(view)}`)
        await sleep(100)
        const got = await fetch(`${gateway.url}/v1/rescans/${view.id}`, { headers: AS_ADMIN })
        if (got.status !== 200) throw new Error(`GET /v1/rescans/:id answered ${got.status}`)
        view = (await got.json()) as RescanView
      }
    }
    const profile = profileAs ? await profileWhile(gateway, profileAs, join(ctx.profileDir, 'profile-s7.cpuprofile'), timed) : (await timed(), undefined)
    const seconds = (performance.now() - started) / 1000
    const cpuSeconds = cpu.read()
    const final = view as RescanView | undefined
    if (!final || final.total !== files) throw new Error(`the rescan covered ${final?.total} uploads, ${files} stored`)
    return { seconds: round(seconds, 3), objectsPerSecond: final.clean / seconds, view: final, cpuSeconds, gatewayPeakRssMiB: round(gateway.rss.peak() / MiB, 1), profile }
  } finally {
    await gateway.stop()
  }
}

async function ready(gateway: GatewayProcess): Promise<void> {
  const deadline = Date.now() + 30_000
  for (;;) {
    const res = await fetch(`${gateway.url}/readyz`, { signal: AbortSignal.timeout(5000) }).catch(() => null)
    await res?.arrayBuffer()
    if (res?.status === 200) return
    if (Date.now() > deadline) throw new Error('the gateway was not ready within 30 s')
    await sleep(100)
  }
}

/** Fresh clamds (no verdict cached from another run), stopped afterwards; start time and RSS noted. */
async function withClamds<T>(ctx: Context, count: number, fn: (clamds: Clamd[]) => Promise<T>): Promise<T & { clamdStartSeconds: number; clamdRssMiB: number[] }> {
  const started = performance.now()
  const clamds = await Promise.all(range(count).map(() => startClamd()))
  const clamdStartSeconds = round((performance.now() - started) / 1000, 2)
  const stops = clamds.map((clamd) => ctx.resources.defer('clamd', () => clamd.stop()))
  try {
    const result = await fn(clamds)
    const clamdRssMiB = Object.values(clamdPids(clamds)).map((pid) => round((pid === undefined ? 0 : (rssOf(pid) ?? 0)) / MiB, 1))
    return { ...result, clamdStartSeconds, clamdRssMiB }
  } finally {
    for (const stop of stops) await stop()
  }
}

function clamdPids(clamds: Clamd[]): Record<string, number | undefined> {
  return Object.fromEntries(clamds.map((c, i) => [clamds.length > 1 ? `clamd${i + 1}` : 'clamd', findPids('clamd', `--config-file=${join(c.dir, 'clamd.conf')}`)[0]]))
}

function hours(seconds: number): string {
  return seconds >= 3600 ? `${round(seconds / 3600, 1)} h` : `${Math.round(seconds / 60)} min`
}

function roundResult(r: ScanRunResult & Record<string, unknown>): Record<string, unknown> {
  return { ...r, seconds: round(r.seconds, 3), filesPerSecond: round(r.filesPerSecond, 2), mbPerSecond: round(r.mbPerSecond, 1) }
}
