import type { S3Client } from '@aws-sdk/client-s3'
import type { ProfileSummary } from './cpu-profile.ts'
import type { Resources } from './resources.ts'

/** One line of the results table: the gateway's figure against its baseline's, in the same run. */
export interface Row {
  scenario: number
  case: string
  metric: string
  /** Which way is better, for the ratio's reading: higher (throughput) or lower (latency, memory). */
  better: 'higher' | 'lower'
  gateway: number
  baseline: number
  baselineLabel: string
  /** gateway / baseline. */
  ratio: number
  /** The goal for this row, in words; null when the row only reports. */
  goal: string | null
  met: boolean | null
  /** The goal as a ratio of this run's baseline (same direction as `ratio`), for the chart. */
  goalRatio?: number
  note?: string
  /** Where the time went while this row was measured (CPU seconds per process, memory breakdown). */
  evidence?: string
}

export interface ScenarioResult {
  id: number
  title: string
  seconds: number
  rows: Row[]
  /** Everything else measured: per-case figures, CPU seconds per process, RSS series, settings. */
  details: Record<string, unknown>
  /** Why it did not run (a missing feature), if it did not. */
  skipped?: string
  /** For a missed goal: where the time (or memory) goes. */
  profiles?: ProfileSummary[]
  /** Profiles that were wanted but left out to keep the run within its time budget. */
  profilesSkipped?: string[]
}

/**
 * A profile of a missed goal, taken after every scenario has measured (so profiling never
 * delays or disturbs a measurement) and only while the run is within its time budget.
 */
export interface ProfileJob {
  what: string
  /** Rough cost, to decide whether it still fits the budget. */
  estimateSeconds: number
  run(): Promise<ProfileSummary>
}

export interface Context {
  quick: boolean
  /** Profile missed goals (full mode by default). */
  profile: boolean
  resources: Resources
  /** This run's scratch directory (databases, logs, generated files). */
  dir: string
  /** Where profiles and gateway logs worth keeping go. */
  profileDir: string
  moto: { endpoint: string; pid: number | undefined }
  /** A clamd for gateways that do not scan (their health checks need one). */
  clamdUrl: string
  s3: S3Client
  buckets: { quarantine: string; production: string; direct: string }
  pgUrl: string
  log(message: string): void
  /** Figures one scenario measures for another (scenario 4 reads scenario 1's 100 MiB × 64 cell). */
  shared: Map<string, unknown>
}

export interface Scenario {
  id: number
  title: string
  run(ctx: Context): Promise<Omit<ScenarioResult, 'id' | 'title' | 'seconds'> & { profileJobs?: ProfileJob[] }>
}
