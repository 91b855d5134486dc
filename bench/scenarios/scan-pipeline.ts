import { createReadStream } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { setTimeout as sleep } from 'node:timers/promises'
import { startClamd, type Clamd } from '../../test/helpers/clamd.ts'
import { sqliteStateStore } from '../../src/adapters/state-store/open-state-store.ts'
import { formatBytes, KiB, MiB, uniqueLabel, writeContentFile } from '../lib/content.ts'
import { profileWhile, type ProfileSummary } from '../lib/cpu-profile.ts'
import { startGatewayProcess } from '../lib/gateway-process.ts'
import { apiGatewayEnv, s3Env } from '../lib/gateway-env.ts'
import { CpuMeter, cpuText, findPids, round } from '../lib/proc.ts'
import { rawScan, type ScanRunResult } from '../lib/raw-clamd.ts'
import { directPipeline, seedQuarantine } from '../lib/direct-pipeline.ts'
import { emptyBucket } from '../lib/s3.ts'
import { forEachLimit, percentile, range } from '../lib/stats.ts'
import type { Context, ProfileJob, Row, Scenario } from '../lib/types.ts'
import { postUpload, uploadAgent } from '../lib/upload-client.ts'

/** Scans at once, on both sides (the gateway's default GW_SCAN_CONCURRENCY). */
const CONCURRENCY = 4
/**
 * `tunedSlots`: the same files once more with more worker jobs than clamd slots
 * (GW_SCAN_CONCURRENCY above GW_CLAMD_MAX_PER_ENDPOINT): a tuning, reported without a goal.
 */
const FULL: Array<{ size: number; files: number; tunedSlots?: number }> = [
  { size: MiB, files: 200 },
  { size: 64 * KiB, files: 120, tunedSlots: 12 }
]
/** Quick mode (CI) checks that the scenario runs: the small-file case only, within the quick budget. */
const QUICK: typeof FULL = [{ size: 64 * KiB, files: 12 }]

interface PipelineResult {
  seconds: number
  filesPerSecond: number
  mbPerSecond: number
  clean: number
  notClean: Record<string, number>
  /** From the worker answering /healthz to an empty queue, a cross-check of `seconds`. */
  wallSeconds: number
  cpuSeconds: Record<string, number>
  /** Median and p99 per file of the time in clamd and of the time after it (promotion, bookkeeping). */
  perFileMs: Record<string, number>
  /** Share of the window the 4 scan slots spent with a scan in clamd. */
  scanSlotsBusyScanning: number
}

/**
 * Quarantine → verdict → promotion. N unique files are uploaded with scanning off (GW_ROLE=api);
 * then a worker process (GW_ROLE=worker, GW_SCAN_CONCURRENCY=4) scans and promotes them all.
 * Baseline (goal 1): a direct pipeline written in the bench (GET from quarantine → INSTREAM →
 * CopyObject to production with the tags in the copy → DeleteObject), 4 files at once, on the
 * same moto. Also reported: INSTREAM of the same files from local disk, 4 at once (raw clamd).
 * Each side gets a fresh clamd, so none meets another's cached verdicts. moto's CPU is measured
 * on both S3 sides: on 2 cores, a core moto takes is a core the pipeline does not have.
 */
export const scanPipeline: Scenario = {
  id: 3,
  title: 'Scan pipeline throughput',
  async run(ctx) {
    const rows: Row[] = []
    const cases: Record<string, unknown>[] = []
    const profileJobs: ProfileJob[] = []
    for (const { size, files, tunedSlots } of ctx.quick ? QUICK : FULL) {
      ctx.log(`  ${files} files of ${formatBytes(size)}, ${CONCURRENCY} scans at once`)
      const dir = join(ctx.dir, `s3-${size}`)
      await mkdir(dir, { recursive: true })
      const paths = range(files).map((i) => join(dir, `${i}.bin`))
      await forEachLimit(paths, 8, (path) => writeContentFile(path, size, uniqueLabel('scan')))

      const raw = await withClamd(ctx, async (clamd) => {
        const cpu = new CpuMeter({ clamd: clamdPid(clamd) })
        const result = await rawScan(clamd.url, files, (i) => createReadStream(paths[i] as string), CONCURRENCY)
        return { ...result, cpuSeconds: cpu.read() }
      })
      const direct = await withClamd(ctx, async (clamd) => {
        const keys = paths.map(() => uniqueLabel('direct'))
        await seedQuarantine(ctx.s3, ctx.buckets.quarantine, paths, keys)
        const cpu = new CpuMeter({ moto: ctx.moto.pid, clamd: clamdPid(clamd) })
        const result = await directPipeline(ctx.s3, clamd.url, ctx.buckets, keys, CONCURRENCY)
        const cpuSeconds = cpu.read()
        await emptyBucket(ctx.s3, ctx.buckets.production)
        await emptyBucket(ctx.s3, ctx.buckets.quarantine)
        return { ...result, cpuSeconds, motoCores: round((cpuSeconds.moto ?? 0) / result.seconds, 2) }
      })
      const pipeline = await runPipeline(ctx, `s3-${size}`, paths, size, false)
      // moto's CPU is read from the worker's start to the drained queue, a little longer than the
      // measured window (first scan to last promotion): an upper bound of the cores it used in it.
      const motoCores = round((pipeline.cpuSeconds.moto ?? 0) / Math.max(0.001, pipeline.seconds), 2)
      const ratio = pipeline.filesPerSecond / direct.filesPerSecond
      const rawRatio = pipeline.filesPerSecond / raw.filesPerSecond
      const failures = raw.failures + direct.failures + (files - pipeline.clean)
      const caseName = `${files} × ${formatBytes(size)}, ${CONCURRENCY} at once`
      const slots =
        `Per file (median): ${pipeline.perFileMs.scanP50} ms in clamd, then ${pipeline.perFileMs.afterScanP50} ms of promotion and bookkeeping holding the slot; ` +
        `the ${CONCURRENCY} slots were scanning ${Math.round(pipeline.scanSlotsBusyScanning * 100)}% of the time.`
      rows.push({
        scenario: 3,
        case: caseName,
        metric: 'files/s',
        better: 'higher',
        gateway: round(pipeline.filesPerSecond, 1),
        baseline: round(direct.filesPerSecond, 1),
        baselineLabel: 'direct pipeline (GET, INSTREAM, copy with tags, delete)',
        ratio: round(ratio, 2),
        goal: '≥ 0.9',
        goalRatio: 0.9,
        met: ratio >= 0.9 && failures === 0,
        note: `moto used ${motoCores} of the 2 cores under the gateway's worker (at most), ${direct.motoCores} under the direct pipeline${failures ? `; ${failures} files not clean` : ''}`,
        evidence:
          `${slots} CPU seconds over the worker's ${pipeline.wallSeconds} s (${pipeline.seconds} s from first scan to last promotion): ${cpuText(pipeline.cpuSeconds)}; ` +
          `direct pipeline over ${round(direct.seconds, 2)} s: ${cpuText(direct.cpuSeconds)}.`
      })
      rows.push({
        scenario: 3,
        case: `${caseName}, against raw clamd`,
        metric: 'files/s',
        better: 'higher',
        gateway: round(pipeline.filesPerSecond, 1),
        baseline: round(raw.filesPerSecond, 1),
        baselineLabel: 'raw clamd INSTREAM from local disk',
        ratio: round(rawRatio, 2),
        goal: null,
        met: null,
        note: `${round(pipeline.mbPerSecond, 1)} MB/s against ${round(raw.mbPerSecond, 1)} MB/s; the direct pipeline reaches ${round(direct.filesPerSecond / raw.filesPerSecond, 2)} of raw clamd`,
        evidence: `Raw clamd over ${round(raw.seconds, 2)} s: ${cpuText(raw.cpuSeconds)}.`
      })
      let tuned: PipelineResult | undefined
      if (tunedSlots) {
        tuned = await runPipeline(ctx, `s3-${size}-tuned`, paths, size, false, tunedSlots)
        const tunedRatio = tuned.filesPerSecond / direct.filesPerSecond
        rows.push({
          scenario: 3,
          case: `${files} × ${formatBytes(size)}, ${tunedSlots} jobs for ${CONCURRENCY} clamd slots`,
          metric: 'files/s',
          better: 'higher',
          gateway: round(tuned.filesPerSecond, 1),
          baseline: round(direct.filesPerSecond, 1),
          baselineLabel: 'direct pipeline (GET, INSTREAM, copy with tags, delete)',
          ratio: round(tunedRatio, 2),
          goal: null,
          met: null,
          note: `GW_SCAN_CONCURRENCY=${tunedSlots}, GW_CLAMD_MAX_PER_ENDPOINT=${CONCURRENCY}: promotions no longer keep clamd waiting; ${round(tuned.mbPerSecond, 1)} MB/s`,
          evidence: `Per file (median): ${tuned.perFileMs.scanP50} ms in clamd (the wait for a clamd slot included), then ${tuned.perFileMs.afterScanP50} ms after it. CPU seconds over the ${tuned.seconds} s window: ${cpuText(tuned.cpuSeconds)}.`
        })
      }
      cases.push({ size, files, concurrency: CONCURRENCY, pipeline: { ...pipeline, motoCores }, direct: rounded(direct), raw: rounded(raw), ...(tuned ? { tunedSlots, tuned } : {}) })
      if (ctx.profile && rows.find((r) => r.case === caseName)?.met === false) {
        const subset = paths.slice(0, Math.max(CONCURRENCY * 4, Math.floor(files / 2)))
        profileJobs.push({
          what: `scenario 3, ${formatBytes(size)}`,
          estimateSeconds: 6 + subset.length / Math.max(1, pipeline.filesPerSecond) + (subset.length * size) / 50e6,
          run: async () => (await runPipeline(ctx, `profile-s3-${size}`, subset, size, true)).profile as ProfileSummary
        })
      }
    }
    return { rows, profileJobs, details: { cases } }
  }
}

async function withClamd<T>(ctx: Context, fn: (clamd: Clamd) => Promise<T>): Promise<T> {
  const clamd = await startClamd()
  const stop = ctx.resources.defer('clamd', () => clamd.stop())
  try {
    return await fn(clamd)
  } finally {
    await stop()
  }
}

function clamdPid(clamd: Clamd): number | undefined {
  return findPids('clamd', `--config-file=${join(clamd.dir, 'clamd.conf')}`)[0]
}

async function runPipeline(
  ctx: Context,
  name: string,
  paths: string[],
  size: number,
  cpuProfile: boolean,
  slots = CONCURRENCY
): Promise<PipelineResult & { profile?: ProfileSummary }> {
  const apiEnv = apiGatewayEnv(ctx, name)
  const ids: string[] = []
  // 1. Into quarantine, nothing scanned yet.
  const api = await startGatewayProcess(ctx.resources, apiEnv, { label: `${name}-api`, dir: ctx.dir })
  const agent = uploadAgent(8)
  try {
    await forEachLimit(paths, 8, async (path) => {
      const answer = await postUpload(api.url, agent, size, createReadStream(path))
      if (answer.status !== 202 || !answer.id) throw new Error(`upload refused: ${answer.status} ${answer.error ?? ''}`)
      ids.push(answer.id)
    })
  } finally {
    agent.destroy()
    await api.stop()
  }

  // 2. A worker on the same state store drains the queue. A profiled worker finds the uploads not
  // due yet, so the profiler is attached before the first claim and start-up stays out of the profile.
  const dbPath = (apiEnv.GW_DATABASE_URL as string).slice('sqlite:'.length)
  if (cpuProfile) setRunAt(dbPath, Date.now() + 3_600_000)
  let profile: ProfileSummary | undefined
  const result = await withClamd(ctx, async (clamd) => {
    const worker = await startGatewayProcess(
      ctx.resources,
      {
        ...s3Env(ctx),
        GW_DATABASE_URL: apiEnv.GW_DATABASE_URL as string,
        GW_ROLE: 'worker',
        GW_CLAMD: clamd.url,
        GW_SCAN_CONCURRENCY: String(slots),
        GW_CLAMD_MAX_PER_ENDPOINT: String(CONCURRENCY),
        ...(cpuProfile ? { GW_POLL_INTERVAL_MS: '50' } : {})
      },
      { label: `${name}-worker`, dir: cpuProfile ? ctx.profileDir : ctx.dir, cpuProfile }
    )
    const cpu = new CpuMeter({ worker: worker.pid, moto: ctx.moto.pid, clamd: clamdPid(clamd) })
    const started = performance.now()
    const drain = async (): Promise<void> => {
      const deadline = Date.now() + 10 * 60_000
      // Uploads without a final status, read from the SQLite file (gateway_queue_depth is refreshed
      // only now and then, so waiting for it added seconds to every run). Polled every 250 ms; the
      // figures come from the store's timestamps anyway.
      while (unfinished(dbPath) !== 0) {
        if (Date.now() > deadline) throw new Error('the worker did not drain the queue within 10 minutes')
        await sleep(250)
      }
    }
    let cpuSeconds: Record<string, number> = {}
    try {
      if (cpuProfile) {
        const title = `scenario 3, worker scanning and promoting ${paths.length} × ${formatBytes(size)}, ${CONCURRENCY} at once`
        profile = await profileWhile(worker, title, join(ctx.profileDir, `${name}.cpuprofile`), async () => {
          setRunAt(dbPath, Date.now())
          await drain()
        })
      } else {
        await drain()
      }
      cpuSeconds = cpu.read()
    } finally {
      await worker.stop()
    }
    return { wallSeconds: (performance.now() - started) / 1000, cpuSeconds }
  })

  // 3. The window from the first scan's start to the last upload's final write, from the store itself.
  const store = sqliteStateStore(dbPath)
  let first = Number.POSITIVE_INFINITY
  let last = 0
  let clean = 0
  const notClean: Record<string, number> = {}
  // Per file: time in clamd (the scan record's duration) and after it (promotion and bookkeeping).
  const scanMs: number[] = []
  const afterMs: number[] = []
  try {
    for (const id of ids) {
      const upload = await store.getUpload(id)
      const scans = await store.listScans(id)
      for (const scan of scans) first = Math.min(first, scan.startedAt)
      const lastScan = scans.at(-1)
      if (lastScan && upload) {
        scanMs.push(lastScan.durationMs)
        afterMs.push(upload.updatedAt - (lastScan.startedAt + lastScan.durationMs))
      }
      if (upload) last = Math.max(last, upload.updatedAt)
      if (upload?.status === 'clean') clean++
      else notClean[upload?.status ?? 'missing'] = (notClean[upload?.status ?? 'missing'] ?? 0) + 1
    }
  } finally {
    await store.close()
  }
  await emptyBucket(ctx.s3, ctx.buckets.production)
  await emptyBucket(ctx.s3, ctx.buckets.quarantine)
  const seconds = Math.max(0.001, (last - first) / 1000)
  const busy = scanMs.reduce((a, b) => a + b, 0) / (seconds * 1000 * CONCURRENCY)
  return {
    seconds: round(seconds, 3),
    filesPerSecond: clean / seconds,
    mbPerSecond: (clean * size) / 1e6 / seconds,
    clean,
    notClean,
    wallSeconds: round(result.wallSeconds, 3),
    cpuSeconds: result.cpuSeconds,
    perFileMs: {
      scanP50: round(percentile(scanMs, 50), 1),
      afterScanP50: round(percentile(afterMs, 50), 1),
      scanP99: round(percentile(scanMs, 99), 1),
      afterScanP99: round(percentile(afterMs, 99), 1)
    },
    scanSlotsBusyScanning: round(busy, 2),
    ...(profile ? { profile } : {})
  }
}

/** Uploads still on their way to a final status. */
function unfinished(dbPath: string): number {
  const db = new DatabaseSync(dbPath, { timeout: 5000, readOnly: true })
  try {
    const row = db.prepare("SELECT count(*) AS n FROM uploads WHERE status IN ('pending', 'scanning', 'promoting', 'requarantining')").get() as { n: number }
    return Number(row.n)
  } finally {
    db.close()
  }
}

/** Makes every pending upload due at `at` (only for the profiled run; run_at is when a job is due). */
function setRunAt(dbPath: string, at: number): void {
  const db = new DatabaseSync(dbPath, { timeout: 5000 })
  try {
    db.prepare("UPDATE uploads SET run_at = ? WHERE status = 'pending'").run(at)
  } finally {
    db.close()
  }
}

function rounded(raw: ScanRunResult & { cpuSeconds: Record<string, number> }): Record<string, unknown> {
  return { ...raw, seconds: round(raw.seconds, 3), filesPerSecond: round(raw.filesPerSecond, 1), mbPerSecond: round(raw.mbPerSecond, 1) }
}
