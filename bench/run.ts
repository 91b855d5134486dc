/**
 * `npm run bench`: every scenario of BENCHMARKS.md, the gateway (its own process) against its
 * baseline, on a local moto and a real clamd. `--quick` runs them on small inputs (CI), writes
 * bench/results/quick.json and leaves BENCHMARKS.md alone. `--only=1,3` runs some scenarios;
 * `--no-profile` skips the profiles of missed goals; `--keep` keeps the scratch directory;
 * `--report` only rewrites BENCHMARKS.md and the chart from bench/results/latest.json.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createBuckets, s3ClientFor, startMoto } from '../test/helpers/moto.ts'
import { startClamd } from '../test/helpers/clamd.ts'
import { pgUrl } from '../test/helpers/postgres.ts'
import { machineFacts } from './lib/machine.ts'
import { findPids } from './lib/proc.ts'
import { Resources } from './lib/resources.ts'
import { rerender, writeReports } from './lib/report.ts'
import type { Context, ProfileJob, Scenario, ScenarioResult } from './lib/types.ts'
import { uploadThroughput } from './scenarios/upload-throughput.ts'
import { ackLatency } from './scenarios/ack-latency.ts'
import { scanPipeline } from './scenarios/scan-pipeline.ts'
import { memory } from './scenarios/memory.ts'
import { statusEndpoint } from './scenarios/status-endpoint.ts'
import { rescanBookkeeping } from './scenarios/rescan-bookkeeping.ts'
import { rescanEndToEnd } from './scenarios/rescan-end-to-end.ts'
import { longPoll } from './scenarios/long-poll.ts'

const scenarios: Scenario[] = [uploadThroughput, ackLatency, scanPipeline, memory, statusEndpoint, rescanBookkeeping, rescanEndToEnd, longPoll]

/** The limits: a full run within 10 minutes on 2 cores, a quick one within 1. */
const BUDGET_SECONDS = { full: 600, quick: 60 }
/** Kept back for the reports and for stopping everything. */
const RESERVE_SECONDS = 20

function log(message: string): void {
  process.stdout.write(`${message}\n`)
}

function parseArgs(argv: string[]): { quick: boolean; only: Set<number> | null; profile: boolean; keep: boolean; report: boolean } {
  const known = /^--(quick|no-profile|profile|keep|report|only=[\d,]+)$/
  for (const arg of argv) if (!known.test(arg)) throw new Error(`unknown argument ${arg}: use --quick, --only=1,3, --no-profile, --profile, --keep, --report`)
  const quick = argv.includes('--quick')
  const only = argv.find((a) => a.startsWith('--only='))
  return {
    quick,
    only: only ? new Set(only.slice('--only='.length).split(',').map(Number)) : null,
    // Profiles cost time: on by default in full mode only.
    profile: argv.includes('--profile') || (!quick && !argv.includes('--no-profile')),
    keep: argv.includes('--keep'),
    report: argv.includes('--report')
  }
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2))
  if (args.report) {
    for (const file of await rerender()) log(`wrote ${file}`)
    return 0
  }
  const startedAt = new Date()
  const resources = new Resources()
  let interrupted = false
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interrupted) return
    interrupted = true
    log(`\n${signal}: stopping everything the bench started`)
    void resources.closeAll(log).finally(() => process.exit(130))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  const dir = await mkdtemp(join(tmpdir(), 'gw-bench-'))
  if (!args.keep) resources.defer('scratch directory', () => rm(dir, { recursive: true, force: true }))
  const results: ScenarioResult[] = []
  let failed = false
  const jobs: Array<{ result: ScenarioResult; job: ProfileJob }> = []
  try {
    log(`bench: ${args.quick ? 'quick' : 'full'} mode, scratch ${dir}`)
    // Taken before anything starts: the load average says whether the machine was quiet.
    const machine = await machineFacts(pgUrl)
    await mkdir(join(dir, 'profiles'))
    const moto = await startMoto()
    resources.defer('moto', () => moto.stop())
    const clamd = await startClamd()
    resources.defer('clamd', () => clamd.stop())
    const buckets = { quarantine: 'bench-quarantine', production: 'bench-production', direct: 'bench-direct' }
    await createBuckets(moto.endpoint, buckets.quarantine, buckets.production, buckets.direct)
    const s3 = s3ClientFor(moto.endpoint)
    resources.defer('s3 client', () => s3.destroy())
    const ctx: Context = {
      quick: args.quick,
      profile: args.profile,
      resources,
      dir,
      profileDir: join(dir, 'profiles'),
      moto: { endpoint: moto.endpoint, pid: findPids('moto_server', `-p ${moto.port}`)[0] },
      clamdUrl: clamd.url,
      s3,
      buckets,
      pgUrl,
      log,
      shared: new Map()
    }
    for (const scenario of scenarios) {
      if (args.only && !args.only.has(scenario.id)) continue
      log(`scenario ${scenario.id}: ${scenario.title}`)
      const started = performance.now()
      try {
        const { profileJobs = [], ...outcome } = await scenario.run(ctx)
        const result: ScenarioResult = { id: scenario.id, title: scenario.title, seconds: Math.round((performance.now() - started) / 100) / 10, ...outcome }
        results.push(result)
        for (const job of profileJobs) jobs.push({ result, job })
        if (result.skipped) log(`  skipped: ${result.skipped}`)
        for (const row of result.rows) {
          const verdict = row.met === null ? '' : row.met ? '  met' : '  MISSED'
          log(`  ${row.case}: gateway ${row.gateway} ${row.metric}, ${row.baselineLabel} ${row.baseline}, ratio ${row.ratio}${verdict}`)
        }
        log(`  (${result.seconds} s)`)
      } catch (err) {
        // One broken scenario does not hide the others' figures, but the run fails.
        failed = true
        const message = err instanceof Error ? (err.stack ?? err.message) : String(err)
        log(`  FAILED: ${message}`)
        results.push({ id: scenario.id, title: scenario.title, seconds: Math.round((performance.now() - started) / 100) / 10, rows: [], details: {}, skipped: `failed: ${message.split('\n')[0]}` })
      }
      if (interrupted) break
    }
    // Profiles of missed goals come last, so they never delay or disturb a measurement, and only
    // while the run stays within its budget.
    const budget = BUDGET_SECONDS[args.quick ? 'quick' : 'full']
    for (const { result, job } of jobs) {
      if (interrupted) break
      const elapsed = (Date.now() - startedAt.getTime()) / 1000
      if (elapsed + job.estimateSeconds > budget - RESERVE_SECONDS) {
        log(`profile of ${job.what} skipped: about ${Math.round(job.estimateSeconds)} s, ${Math.round(budget - elapsed)} s left of the ${budget} s budget`)
        result.profilesSkipped = [...(result.profilesSkipped ?? []), `${job.what}: left out to stay within the ${budget} s budget`]
        continue
      }
      log(`profiling ${job.what} (about ${Math.round(job.estimateSeconds)} s)`)
      try {
        result.profiles = [...(result.profiles ?? []), await job.run()]
      } catch (err) {
        failed = true
        log(`  profile of ${job.what} FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
      }
    }
    const written = await writeReports(results, { mode: args.quick ? 'quick' : 'full', partial: args.only !== null, startedAt, failed, machine })
    for (const file of written) log(`wrote ${file}`)
  } finally {
    await resources.closeAll(log)
  }
  log(`bench ${failed ? 'failed' : 'done'} in ${Math.round((Date.now() - startedAt.getTime()) / 1000)} s`)
  return failed ? 1 : 0
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exit(1)
  }
)
