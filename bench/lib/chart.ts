import type { Row } from './types.ts'

const WIDTH = 960
const LABEL = 380
const PLOT = 500
const ROW = 22
const TOP = 56
const MIN = 0.03
const MAX = 30

/** The gateway against its baseline, oriented so that right is better (latency and memory inverted). */
export function score(row: Row): number {
  return row.better === 'higher' ? row.ratio : 1 / row.ratio
}

/** Where a row's goal sits on the same scale. */
function goalScore(row: Row): number | null {
  if (row.goalRatio === undefined || row.goal === null) return null
  return row.better === 'higher' ? row.goalRatio : 1 / row.goalRatio
}

const x = (v: number): number => LABEL + ((Math.log10(Math.min(MAX, Math.max(MIN, v))) - Math.log10(MIN)) / (Math.log10(MAX) - Math.log10(MIN))) * PLOT

const esc = (s: string): string => s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;')

/**
 * A horizontal bar chart of every row's ratio on a log scale, written by hand (no dependency):
 * green met its goal, red missed it, grey has no goal. A tick marks each row's goal when it is a ratio.
 */
export function chartSvg(rows: Row[], subtitle: string): string {
  const height = TOP + rows.length * ROW + 40
  const parts: string[] = []
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="12">`)
  parts.push(`<rect width="${WIDTH}" height="${height}" fill="#fff"/>`)
  parts.push(`<text x="12" y="20" font-size="15" font-weight="bold">Gateway ÷ baseline, same run (right is better; latency and memory inverted)</text>`)
  parts.push(`<text x="12" y="38" fill="#555">${esc(subtitle)}</text>`)
  for (const v of [0.03, 0.1, 0.3, 1, 3, 10, 30]) {
    const px = x(v)
    parts.push(`<line x1="${px}" y1="${TOP - 6}" x2="${px}" y2="${TOP + rows.length * ROW}" stroke="${v === 1 ? '#333' : '#ddd'}" stroke-width="${v === 1 ? 1.2 : 1}"/>`)
    parts.push(`<text x="${px}" y="${TOP + rows.length * ROW + 16}" text-anchor="middle" fill="#555">${v}×</text>`)
  }
  rows.forEach((row, i) => {
    const y = TOP + i * ROW
    const s = score(row)
    const color = row.met === null ? '#9e9e9e' : row.met ? '#2e7d32' : '#c62828'
    const label = `${row.scenario} · ${row.case} (${row.metric})`
    parts.push(`<text x="${LABEL - 8}" y="${y + 15}" text-anchor="end">${esc(label)}</text>`)
    const from = x(1)
    const to = x(s)
    parts.push(`<rect x="${Math.min(from, to)}" y="${y + 4}" width="${Math.max(1, Math.abs(to - from))}" height="${ROW - 8}" fill="${color}"/>`)
    const goal = goalScore(row)
    if (goal !== null) parts.push(`<line x1="${x(goal)}" y1="${y + 1}" x2="${x(goal)}" y2="${y + ROW - 1}" stroke="#000" stroke-width="2" stroke-dasharray="3,2"/>`)
    const text = `${Math.round(s * 100) / 100}×`
    parts.push(`<text x="${Math.max(from, to) + 4}" y="${y + 15}" fill="#222">${text}</text>`)
  })
  parts.push(`<text x="12" y="${height - 6}" fill="#555">green: goal met · red: goal missed · grey: no goal for this row · dashed tick: the goal in this run's terms · log scale, clipped at ${MIN}× and ${MAX}×</text>`)
  parts.push('</svg>')
  return parts.join('\n') + '\n'
}
