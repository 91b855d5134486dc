import { formatBytes, GiB, MiB } from '../lib/content.ts'
import { startGatewayProcess } from '../lib/gateway-process.ts'
import { apiGatewayEnv, PART_SIZE, QUEUE_SIZE } from '../lib/gateway-env.ts'
import { cpuText, round } from '../lib/proc.ts'
import type { Row, Scenario } from '../lib/types.ts'
import { runGateway, SHARED_BIG_CELL, type CellResult, type GatewaySide } from './upload-throughput.ts'

/** RSS that grows by more than this from the second quarter of a run to its last is not flat. */
const FLAT_TOLERANCE = 32 * MiB

interface MemoryCase {
  label: string
  size: number
  lanes: number
  thresholdBytes: number
}

/**
 * Peak RSS of the gateway process (VmRSS every 50 ms) while it takes one very large upload and
 * many large ones at once. The baseline is the goal itself: the thresholds of the issue.
 * Alongside, prom-client's heap and external-memory gauges show what the RSS is made of.
 */
export const memory: Scenario = {
  id: 4,
  title: 'Gateway memory',
  async run(ctx) {
    const cases: MemoryCase[] = ctx.quick
      ? [
          { label: 'one 32 MiB upload', size: 32 * MiB, lanes: 1, thresholdBytes: 256 * MiB },
          { label: '16 × 6 MiB at once', size: 6 * MiB, lanes: 16, thresholdBytes: 512 * MiB }
        ]
      : [
          { label: 'one 1 GiB upload', size: GiB, lanes: 1, thresholdBytes: 256 * MiB },
          { label: '64 × 100 MiB at once', size: 100 * MiB, lanes: 64, thresholdBytes: 512 * MiB }
        ]
    const rows: Row[] = []
    const measured: Record<string, unknown>[] = []
    for (const c of cases) {
      const shared = ctx.shared.get(SHARED_BIG_CELL) as CellResult | undefined
      let side: GatewaySide
      let source: string
      if (shared && shared.size === c.size && shared.concurrency === c.lanes) {
        // Already measured by scenario 1 (same settings, same run): 6.4 GiB through moto once, not twice.
        ctx.log(`  ${c.label}: from scenario 1's cell`)
        side = shared.gateway
        source = 'scenario 1 (same cell, same run)'
      } else {
        ctx.log(`  ${c.label}`)
        const gateway = await startGatewayProcess(ctx.resources, apiGatewayEnv(ctx, `s4-${c.lanes}`), { label: `s4-${c.lanes}`, dir: ctx.dir })
        try {
          side = await runGateway(ctx, gateway, c.size, c.lanes, c.lanes, { breakdown: true })
        } finally {
          await gateway.stop()
        }
        source = 'this scenario'
      }
      const growth = flatness(side.rssSeries)
      const flat = growth <= FLAT_TOLERANCE
      const ok = side.peakRssBytes <= c.thresholdBytes && side.failures === 0 && flat
      rows.push({
        scenario: 4,
        case: c.label,
        metric: 'peak RSS MiB',
        better: 'lower',
        gateway: round(side.peakRssBytes / MiB, 1),
        baseline: round(c.thresholdBytes / MiB, 0),
        baselineLabel: 'goal threshold',
        ratio: round(side.peakRssBytes / c.thresholdBytes, 2),
        goal: `≤ ${formatBytes(c.thresholdBytes)}, flat, no failure`,
        goalRatio: 1,
        met: ok,
        note: `${side.failures} failed; ${round(side.rssBeforeBytes / MiB, 0)} MiB before the uploads; RSS changed by ${round(growth / MiB, 0)} MiB from the 2nd to the last quarter; ${round(side.mbPerSecond, 1)} MB/s`,
        evidence:
          (side.atPeak
            ? `When V8's heap and the Buffers together were largest (sampled every 250 ms): RSS ${side.atPeak.process_resident_memoryMiB} MiB, V8 heap ${side.atPeak.nodejs_heap_size_usedMiB} MiB used of ${side.atPeak.nodejs_heap_size_totalMiB} MiB, Buffers and other external memory ${side.atPeak.nodejs_external_memoryMiB} MiB; the rest is code, native allocations and memory the allocator keeps. `
            : '') + `CPU seconds: ${cpuText(side.cpuSeconds)}.${side.errors.length ? ` First errors: ${side.errors.join('; ')}` : ''}`
      })
      measured.push({
        case: c.label,
        size: c.size,
        concurrency: c.lanes,
        source,
        peakRssBytes: side.peakRssBytes,
        rssBeforeBytes: side.rssBeforeBytes,
        growthBytes: growth,
        failures: side.failures,
        errors: side.errors,
        seconds: side.seconds,
        mbPerSecond: round(side.mbPerSecond, 1),
        cpuSeconds: side.cpuSeconds,
        atPeak: side.atPeak,
        rssSeries: side.rssSeries.map(([t, rss]) => [t, round(rss / MiB, 1)])
      })
    }
    return {
      rows,
      details: {
        settings: {
          GW_S3_PART_SIZE_BYTES: PART_SIZE,
          GW_S3_QUEUE_SIZE: QUEUE_SIZE,
          GW_UPLOAD_MEMORY_BYTES: 'default (128 MiB)',
          GW_MAX_CONCURRENT_UPLOADS: 64,
          note: 'the smallest part and queue sizes the gateway allows; the uploads share the default pool of 128 MiB of part buffers (25 buffers of 5 MiB), and one that finds none free waits for one, unread'
        },
        flatToleranceBytes: FLAT_TOLERANCE,
        cases: measured
      }
    }
  }
}

/** RSS growth between the median of the second quarter and the median of the last quarter. */
function flatness(series: Array<[number, number]>): number {
  if (series.length < 8) return 0
  const q = Math.floor(series.length / 4)
  const median = (part: Array<[number, number]>): number => {
    const values = part.map(([, v]) => v).sort((a, b) => a - b)
    return values[Math.floor(values.length / 2)] ?? 0
  }
  return median(series.slice(3 * q)) - median(series.slice(q, 2 * q))
}
