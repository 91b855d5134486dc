import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { loadavg } from 'node:os'
import { join, relative } from 'node:path'
import { chartSvg } from './chart.ts'
import { REPO_ROOT } from './gateway-process.ts'
import type { Machine } from './machine.ts'
import { markdown } from './markdown.ts'
import type { Row, ScenarioResult } from './types.ts'

export const RESULTS_DIR = join(REPO_ROOT, 'bench', 'results')
const LATEST = join(RESULTS_DIR, 'latest.json')

export interface RunInfo {
  mode: 'full' | 'quick'
  /** Only some scenarios ran (--only): the full report is left alone. */
  partial: boolean
  startedAt: Date
  failed: boolean
  machine: Machine
}

/** bench/results/*.json: every figure, the machine, and each scenario's details. */
interface ResultsFile {
  mode: 'full' | 'quick'
  partial: boolean
  failed: boolean
  startedAt: string
  finishedAt: string
  seconds: number
  machine: Machine
  loadAverageAtEnd: number[]
  rows: Row[]
  scenarios: ScenarioResult[]
}

/**
 * A full run writes bench/results/latest.json, the chart and BENCHMARKS.md; a quick run only
 * bench/results/quick.json, and a partial one bench/results/partial.json, so neither replaces
 * the figures of the last full run.
 */
export async function writeReports(results: ScenarioResult[], info: RunInfo): Promise<string[]> {
  await mkdir(RESULTS_DIR, { recursive: true })
  const finishedAt = new Date()
  const json: ResultsFile = {
    mode: info.mode,
    partial: info.partial,
    failed: info.failed,
    startedAt: info.startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    seconds: Math.round((finishedAt.getTime() - info.startedAt.getTime()) / 1000),
    machine: info.machine,
    loadAverageAtEnd: loadavg().map((l) => Math.round(l * 100) / 100),
    rows: results.flatMap((r) => r.rows),
    scenarios: results
  }
  const name = info.mode === 'quick' ? 'quick.json' : info.partial ? 'partial.json' : 'latest.json'
  const file = join(RESULTS_DIR, name)
  await writeFile(file, JSON.stringify(json, null, 2) + '\n')
  const written = [file]
  if (info.mode === 'full' && !info.partial && !info.failed) written.push(...(await renderDocs(json)))
  return written.map((f) => relative(REPO_ROOT, f))
}

/** `--report`: BENCHMARKS.md and the chart again from bench/results/latest.json (after editing bench/analysis.md, say). */
export async function rerender(): Promise<string[]> {
  const json = JSON.parse(await readFile(LATEST, 'utf8')) as ResultsFile
  return (await renderDocs(json)).map((f) => relative(REPO_ROOT, f))
}

async function renderDocs(json: ResultsFile): Promise<string[]> {
  const chart = join(RESULTS_DIR, 'chart.svg')
  const startedAt = new Date(json.startedAt)
  const subtitle = `npm run bench, ${json.startedAt.slice(0, 10)}, ${json.machine.cores} cores, Node ${json.machine.node}`
  await writeFile(chart, chartSvg(json.rows, subtitle))
  const doc = join(REPO_ROOT, 'BENCHMARKS.md')
  await writeFile(doc, markdown(json.scenarios, { startedAt, seconds: json.seconds, machine: json.machine, loadAverageAtEnd: json.loadAverageAtEnd ?? [] }, relative(REPO_ROOT, chart)))
  return [chart, doc]
}
