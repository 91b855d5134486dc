import { join } from 'node:path'
import { contentStream, formatBytes, KiB, MiB, uniqueLabel } from '../lib/content.ts'
import { profileWhile, type ProfileSummary } from '../lib/cpu-profile.ts'
import { startGatewayProcess, type GatewayProcess } from '../lib/gateway-process.ts'
import { apiGatewayEnv, PART_SIZE, QUEUE_SIZE } from '../lib/gateway-env.ts'
import { sampleBreakdown } from '../lib/memory-breakdown.ts'
import { CpuMeter, cpuText, round, rssOf } from '../lib/proc.ts'
import { directUpload, emptyBucket } from '../lib/s3.ts'
import { forEachLimit, range, secondsSince } from '../lib/stats.ts'
import type { Context, ProfileJob, Row, Scenario } from '../lib/types.ts'
import { postUpload, uploadAgent } from '../lib/upload-client.ts'

/** Files per cell: enough to fill every lane a few times, few enough for the 10-minute budget. */
const FULL: Array<{ size: number; counts: Record<number, number> }> = [
  { size: 10 * KiB, counts: { 1: 100, 8: 240, 64: 320 } },
  { size: MiB, counts: { 1: 24, 8: 64, 64: 128 } },
  { size: 100 * MiB, counts: { 1: 2, 8: 8, 64: 64 } }
]
const QUICK: typeof FULL = [
  { size: 10 * KiB, counts: { 1: 10, 8: 24, 64: 64 } },
  { size: MiB, counts: { 1: 4, 8: 16 } },
  { size: 8 * MiB, counts: { 1: 1, 8: 8 } }
]

export interface SideResult {
  seconds: number
  mbPerSecond: number
  filesPerSecond: number
  failures: number
  errors: string[]
}

export interface GatewaySide extends SideResult {
  peakRssBytes: number
  /** RSS just before the uploads started (the process, warmed up and idle). */
  rssBeforeBytes: number
  rssSeries: Array<[number, number]>
  cpuSeconds: Record<string, number>
  /** prom-client's memory gauges when heap and Buffers were largest (when asked for). */
  atPeak: Record<string, number> | null
}

export interface CellResult {
  size: number
  concurrency: number
  files: number
  direct: SideResult & { cpuSeconds: Record<string, number> }
  gateway: GatewaySide
}

/** Key under which the 64-lane cell of the largest size is shared with scenario 4. */
export const SHARED_BIG_CELL = 'upload-throughput:largest-64'

export const uploadThroughput: Scenario = {
  id: 1,
  title: 'Upload throughput',
  async run(ctx) {
    const plan = ctx.quick ? QUICK : FULL
    const cells: CellResult[] = []
    let flip = false
    for (const { size, counts } of plan) {
      // One gateway per file size, as a long-running process would see them: warmed up, then each concurrency.
      const gateway = await startGatewayProcess(ctx.resources, apiGatewayEnv(ctx, `s1-${size}`), { label: `s1-${formatBytes(size).replace(' ', '')}`, dir: ctx.dir })
      try {
        await warmUp(ctx, gateway, ctx.quick ? 4 : 16)
        for (const [lanes, files] of Object.entries(counts).map(([c, n]) => [Number(c), n] as const)) {
          ctx.log(`  ${formatBytes(size)} × ${files} files at concurrency ${lanes}`)
          // Alternate which side goes first, so drift (moto warming up, page cache) favours neither.
          flip = !flip
          let direct: CellResult['direct'] | undefined
          let viaGateway: GatewaySide | undefined
          for (const side of flip ? ['direct', 'gateway'] : ['gateway', 'direct']) {
            if (side === 'direct') direct = await runDirect(ctx, size, lanes, files)
            // The cell scenario 4 reads: sample what its RSS is made of.
            else viaGateway = await runGateway(ctx, gateway, size, lanes, files, { breakdown: size === plan.at(-1)?.size && lanes === 64 })
          }
          const cell = { size, concurrency: lanes, files, direct: direct as CellResult['direct'], gateway: viaGateway as GatewaySide }
          cells.push(cell)
          if (size === plan.at(-1)?.size && lanes === 64) ctx.shared.set(SHARED_BIG_CELL, cell)
        }
      } finally {
        await gateway.stop()
      }
    }

    const rows: Row[] = cells.map((c) => {
      const ratio = c.gateway.mbPerSecond / c.direct.mbPerSecond
      const hasGoal = c.size >= MiB
      const failures = c.gateway.failures + c.direct.failures
      return {
        scenario: 1,
        case: `${formatBytes(c.size)} × ${c.concurrency}`,
        metric: 'MB/s',
        better: 'higher',
        gateway: round(c.gateway.mbPerSecond, 1),
        baseline: round(c.direct.mbPerSecond, 1),
        baselineLabel: 'direct lib-storage',
        ratio: round(ratio, 2),
        goal: hasGoal ? '≥ 0.9' : null,
        goalRatio: 0.9,
        met: hasGoal ? ratio >= 0.9 && failures === 0 : null,
        ...(failures > 0 ? { note: `${c.gateway.failures} gateway and ${c.direct.failures} direct uploads failed` } : {}),
        evidence:
          `CPU seconds, gateway side (${c.gateway.seconds} s): ${cpuText(c.gateway.cpuSeconds)}; ` +
          `direct side (${c.direct.seconds} s): ${cpuText(c.direct.cpuSeconds)}. Gateway peak RSS ${round(c.gateway.peakRssBytes / MiB, 0)} MiB.`
      }
    })

    // Profiles of the worst missed cell among small files (per-request cost) and among large ones (per-byte cost).
    const profileJobs: ProfileJob[] = []
    const missed = rows.map((r, i) => ({ r, c: cells[i] as CellResult })).filter(({ r }) => r.met === false)
    for (const group of [missed.filter(({ c }) => c.size < 8 * MiB), missed.filter(({ c }) => c.size >= 8 * MiB)]) {
      if (!ctx.profile || group.length === 0) continue
      const worst = group.reduce((a, b) => (b.r.ratio < a.r.ratio ? b : a)).c
      // At most about 800 MB again, at the cell's concurrency when that fits.
      const lanes = Math.min(worst.concurrency, Math.max(1, Math.floor((800 * MiB) / worst.size)))
      const files = Math.min(worst.files, Math.max(lanes, Math.floor((800 * MiB) / worst.size)))
      profileJobs.push({
        what: `scenario 1, ${formatBytes(worst.size)} × ${lanes}`,
        estimateSeconds: 5 + (files * worst.size) / 30e6,
        run: () => profileCell(ctx, worst.size, lanes, files)
      })
    }

    return {
      rows,
      profileJobs,
      details: {
        settings: {
          partSizeBytes: PART_SIZE,
          queueSize: QUEUE_SIZE,
          note: 'both sides use the same part and queue sizes (the direct side with lib-storage, the gateway with its own multipart put over a shared pool of part buffers, GW_UPLOAD_MEMORY_BYTES at its default); MB = 10^6 bytes; the gateway runs GW_ROLE=api (no scans during upload scenarios)'
        },
        cells: cells.map((c) => ({ ...c, gateway: { ...c.gateway, rssSeries: undefined } }))
      }
    }
  }
}

async function warmUp(ctx: Context, gateway: GatewayProcess, uploads = 16): Promise<void> {
  const agent = uploadAgent(8)
  try {
    await forEachLimit(range(uploads), 8, async () => {
      await postUpload(gateway.url, agent, 10 * KiB, contentStream(10 * KiB, uniqueLabel('warm')))
      await directUpload(ctx.s3, ctx.buckets.direct, uniqueLabel('warm'), contentStream(10 * KiB, uniqueLabel('warm')), PART_SIZE, QUEUE_SIZE)
    })
  } finally {
    agent.destroy()
  }
  await emptyBucket(ctx.s3, ctx.buckets.quarantine)
  await emptyBucket(ctx.s3, ctx.buckets.direct)
}

export async function runDirect(ctx: Context, size: number, lanes: number, files: number): Promise<CellResult['direct']> {
  const errors: string[] = []
  const cpu = new CpuMeter({ moto: ctx.moto.pid })
  const started = performance.now()
  await forEachLimit(range(files), lanes, async () => {
    const label = uniqueLabel('direct')
    try {
      await directUpload(ctx.s3, ctx.buckets.direct, label, contentStream(size, label), PART_SIZE, QUEUE_SIZE)
    } catch (err) {
      errors.push((err as Error).message)
    }
  })
  const seconds = secondsSince(started)
  const cpuSeconds = cpu.read()
  await emptyBucket(ctx.s3, ctx.buckets.direct)
  return { ...throughput(size, files - errors.length, seconds), failures: errors.length, errors: errors.slice(0, 5), cpuSeconds }
}

export async function runGateway(
  ctx: Context,
  gateway: GatewayProcess,
  size: number,
  lanes: number,
  files: number,
  options: { breakdown?: boolean } = {}
): Promise<GatewaySide> {
  const errors: string[] = []
  const sampler = options.breakdown ? sampleBreakdown(gateway) : null
  const rssBeforeBytes = rssOf(gateway.pid) ?? 0
  const agent = uploadAgent(lanes)
  const cpu = new CpuMeter({ gateway: gateway.pid, moto: ctx.moto.pid })
  const from = Date.now()
  const started = performance.now()
  try {
    await forEachLimit(range(files), lanes, async () => {
      const answer = await postUpload(gateway.url, agent, size, contentStream(size, uniqueLabel('gw')))
      if (answer.status !== 202) errors.push(`${answer.status} ${answer.error ?? ''}`.trim())
    })
  } finally {
    agent.destroy()
  }
  const seconds = secondsSince(started)
  const to = Date.now()
  const cpuSeconds = cpu.read()
  const atPeak = sampler ? await sampler.stop() : null
  await emptyBucket(ctx.s3, ctx.buckets.quarantine)
  return {
    ...throughput(size, files - errors.length, seconds),
    failures: errors.length,
    errors: errors.slice(0, 5),
    peakRssBytes: gateway.rss.peak(from, to),
    rssBeforeBytes,
    rssSeries: gateway.rss.series(from, to).map(([t, rss]) => [t - from, rss]),
    cpuSeconds,
    atPeak
  }
}

function throughput(size: number, okFiles: number, seconds: number): { seconds: number; mbPerSecond: number; filesPerSecond: number } {
  return { seconds: round(seconds, 3), mbPerSecond: (okFiles * size) / 1e6 / seconds, filesPerSecond: round(okFiles / seconds, 1) }
}

async function profileCell(ctx: Context, size: number, lanes: number, files: number): Promise<ProfileSummary> {
  const label = `profile-s1-${formatBytes(size).replace(' ', '')}-c${lanes}`
  const gateway = await startGatewayProcess(ctx.resources, apiGatewayEnv(ctx, label), { label, dir: ctx.profileDir, cpuProfile: true })
  try {
    await warmUp(ctx, gateway)
    const title = `scenario 1, gateway taking ${files} × ${formatBytes(size)}, ${lanes} at once`
    return await profileWhile(gateway, title, join(ctx.profileDir, `${label}.cpuprofile`), () => runGateway(ctx, gateway, size, lanes, files))
  } finally {
    await gateway.stop()
  }
}
