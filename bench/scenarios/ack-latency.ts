import { join } from 'node:path'
import { PutObjectCommand } from '@aws-sdk/client-s3'
import { contentBuffer, contentStream, KiB, uniqueLabel } from '../lib/content.ts'
import { profileWhile, type ProfileSummary } from '../lib/cpu-profile.ts'
import { startGatewayProcess, type GatewayProcess } from '../lib/gateway-process.ts'
import { apiGatewayEnv } from '../lib/gateway-env.ts'
import { CpuMeter, cpuText, round } from '../lib/proc.ts'
import { emptyBucket } from '../lib/s3.ts'
import { percentile } from '../lib/stats.ts'
import type { Context, ProfileJob, Row, Scenario } from '../lib/types.ts'
import { postUpload, uploadAgent } from '../lib/upload-client.ts'

const SIZE = 10 * KiB
const ADDED_MS_GOAL = 5

/**
 * One client, one upload at a time, gateway and direct PutObject interleaved request by request
 * (so any drift of the machine hits both sides alike): the latency a user waits for the 202.
 */
export const ackLatency: Scenario = {
  id: 2,
  title: 'Acknowledgement latency',
  async run(ctx) {
    const count = ctx.quick ? 40 : 300
    const gateway = await startGatewayProcess(ctx.resources, apiGatewayEnv(ctx, 's2'), { label: 's2', dir: ctx.dir })
    let measured: Measured
    try {
      await interleave(ctx, gateway, 20) // warm-up: connections, JIT, lazily loaded SDK commands
      ctx.log(`  ${count} uploads of 10 KiB each side, one at a time`)
      measured = await interleave(ctx, gateway, count)
    } finally {
      await gateway.stop()
    }
    const p50 = { gateway: percentile(measured.gateway, 50), direct: percentile(measured.direct, 50) }
    const p99 = { gateway: percentile(measured.gateway, 99), direct: percentile(measured.direct, 99) }
    const added = p50.gateway - p50.direct
    const failures = measured.failures
    const rows: Row[] = [
      {
        scenario: 2,
        case: '10 KiB, p50',
        metric: 'ms',
        better: 'lower',
        gateway: round(p50.gateway, 2),
        baseline: round(p50.direct, 2),
        baselineLabel: 'direct PutObject',
        ratio: round(p50.gateway / p50.direct, 2),
        goal: `≤ +${ADDED_MS_GOAL} ms`,
        goalRatio: (p50.direct + ADDED_MS_GOAL) / p50.direct,
        met: added <= ADDED_MS_GOAL && failures === 0,
        note: `adds ${round(added, 2)} ms${failures ? `; ${failures} uploads failed` : ''}`,
        evidence: `CPU seconds over both sides' ${count} requests: ${cpuText(measured.cpuSeconds)}.`
      },
      {
        scenario: 2,
        case: '10 KiB, p99',
        metric: 'ms',
        better: 'lower',
        gateway: round(p99.gateway, 2),
        baseline: round(p99.direct, 2),
        baselineLabel: 'direct PutObject',
        ratio: round(p99.gateway / p99.direct, 2),
        goal: null,
        met: null,
        note: `adds ${round(p99.gateway - p99.direct, 2)} ms`
      }
    ]
    const profileJobs: ProfileJob[] =
      ctx.profile && rows[0]?.met === false ? [{ what: 'scenario 2', estimateSeconds: 8, run: () => profile(ctx, Math.min(count, 200)) }] : []
    return {
      rows,
      profileJobs,
      details: {
        count,
        failures,
        gatewayMs: summary(measured.gateway),
        directMs: summary(measured.direct),
        cpuSeconds: measured.cpuSeconds
      }
    }
  }
}

interface Measured {
  gateway: number[]
  direct: number[]
  failures: number
  cpuSeconds: Record<string, number>
}

async function interleave(ctx: Context, gateway: GatewayProcess, count: number): Promise<Measured> {
  const agent = uploadAgent(1)
  const out: Measured = { gateway: [], direct: [], failures: 0, cpuSeconds: {} }
  const cpu = new CpuMeter({ gateway: gateway.pid, moto: ctx.moto.pid })
  try {
    for (let i = 0; i < count; i++) {
      const answer = await postUpload(gateway.url, agent, SIZE, contentStream(SIZE, uniqueLabel('ack')))
      if (answer.status === 202) out.gateway.push(answer.ms)
      else out.failures++
      const label = uniqueLabel('ack-direct')
      const body = contentBuffer(SIZE, label)
      const started = performance.now()
      await ctx.s3.send(new PutObjectCommand({ Bucket: ctx.buckets.direct, Key: label, Body: body }))
      out.direct.push(performance.now() - started)
    }
  } finally {
    agent.destroy()
  }
  out.cpuSeconds = cpu.read()
  await emptyBucket(ctx.s3, ctx.buckets.quarantine)
  await emptyBucket(ctx.s3, ctx.buckets.direct)
  return out
}

function summary(values: number[]): Record<string, number> {
  return {
    p50: round(percentile(values, 50), 2),
    p90: round(percentile(values, 90), 2),
    p99: round(percentile(values, 99), 2),
    max: round(Math.max(...values), 2),
    mean: round(values.reduce((a, b) => a + b, 0) / values.length, 2)
  }
}

async function profile(ctx: Context, count: number): Promise<ProfileSummary> {
  ctx.log(`  profiling the gateway: ${count} acknowledgements`)
  const gateway = await startGatewayProcess(ctx.resources, apiGatewayEnv(ctx, 'profile-s2'), { label: 'profile-s2', dir: ctx.profileDir, cpuProfile: true })
  try {
    await interleave(ctx, gateway, 20)
    const title = `scenario 2, gateway taking ${count} sequential 10 KiB uploads`
    return await profileWhile(gateway, title, join(ctx.profileDir, 'profile-s2.cpuprofile'), () => interleave(ctx, gateway, count))
  } finally {
    await gateway.stop()
  }
}
