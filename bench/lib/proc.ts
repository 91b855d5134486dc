import { readdirSync, readFileSync } from 'node:fs'

const TICKS_PER_SECOND = 100 // USER_HZ on Linux

/** Resident set size of a process in bytes (VmRSS), or null once it is gone. */
export function rssOf(pid: number): number | null {
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return match ? Number(match[1]) * 1024 : null
  } catch {
    return null
  }
}

/** CPU seconds (user + system) a process has used so far, or null once it is gone. */
export function cpuSecondsOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND
  } catch {
    return null
  }
}

/** Pids whose command line contains every one of `parts` (moto and clamd run under wrapper shells). */
export function findPids(...parts: string[]): number[] {
  const found: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let cmdline: string
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ')
    } catch {
      continue
    }
    if (parts.every((p) => cmdline.includes(p)) && !cmdline.startsWith('sh ')) found.push(Number(entry))
  }
  return found
}

/** Samples a process's RSS every intervalMs, keeping the whole series (time, bytes). */
export class RssSampler {
  readonly samples: Array<[number, number]> = []
  readonly pid: number
  readonly #timer: NodeJS.Timeout

  constructor(pid: number, intervalMs = 50) {
    this.pid = pid
    this.#sample()
    this.#timer = setInterval(() => this.#sample(), intervalMs)
    this.#timer.unref()
  }

  #sample(): void {
    const rss = rssOf(this.pid)
    if (rss !== null) this.samples.push([Date.now(), rss])
  }

  /** Highest RSS seen between two times (whole series by default). */
  peak(from = 0, to = Number.POSITIVE_INFINITY): number {
    let max = 0
    for (const [t, rss] of this.samples) if (t >= from && t <= to && rss > max) max = rss
    return max
  }

  /** The series between two times, thinned to at most `points` samples (for the JSON and the chart). */
  series(from = 0, to = Number.POSITIVE_INFINITY, points = 200): Array<[number, number]> {
    const inside = this.samples.filter(([t]) => t >= from && t <= to)
    if (inside.length <= points) return inside
    const step = inside.length / points
    const out: Array<[number, number]> = []
    // Keep each bucket's maximum, so thinning never hides the peak.
    for (let i = 0; i < points; i++) {
      const bucket = inside.slice(Math.floor(i * step), Math.floor((i + 1) * step))
      const top = bucket.reduce((a, b) => (b[1] > a[1] ? b : a), bucket[0] as [number, number])
      out.push(top)
    }
    return out
  }

  stop(): void {
    clearInterval(this.#timer)
  }
}

/** CPU seconds used by named processes over a stretch of the run: where the time went. */
export class CpuMeter {
  readonly pids: Record<string, number | undefined>
  readonly #start: Map<string, number>
  readonly #selfStart = process.cpuUsage()

  constructor(pids: Record<string, number | undefined>) {
    this.pids = pids
    this.#start = new Map(Object.entries(pids).map(([name, pid]) => [name, pid === undefined ? 0 : (cpuSecondsOf(pid) ?? 0)]))
  }

  /** Seconds per process since construction, the bench process itself included. */
  read(): Record<string, number> {
    const out: Record<string, number> = {}
    for (const [name, pid] of Object.entries(this.pids)) {
      if (pid === undefined) continue
      const now = cpuSecondsOf(pid)
      if (now !== null) out[name] = round(now - (this.#start.get(name) ?? 0), 2)
    }
    const self = process.cpuUsage(this.#selfStart)
    out.bench = round((self.user + self.system) / 1e6, 2)
    return out
  }
}

export function round(value: number, digits = 2): number {
  const f = 10 ** digits
  return Math.round(value * f) / f
}

/** "gateway 1.2, moto 3.4, bench 0.5": CPU seconds per process, for the report. */
export function cpuText(cpu: Record<string, number>): string {
  return Object.entries(cpu)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ')
}
