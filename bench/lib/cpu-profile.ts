import { writeFile } from 'node:fs/promises'
import { Session } from 'node:inspector/promises'
import { relative } from 'node:path'
import { REPO_ROOT } from './gateway-process.ts'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  children?: number[]
}

export interface CpuProfile {
  nodes: ProfileNode[]
  startTime: number
  endTime: number
  samples?: number[]
  timeDeltas?: number[]
}

export interface ProfileSummary {
  label: string
  /** Profiled wall time, ms. */
  totalMs: number
  /** Share of samples where the process was idle (waiting on I/O). */
  idlePct: number
  /** Functions by self time, busy time only. */
  top: Array<{ fn: string; where: string; selfMs: number; pct: number }>
  /** Self time grouped by where the code lives (gateway source, each package, node modules, GC); native code counts for its caller. */
  areas: Array<{ area: string; selfMs: number; pct: number }>
}

const SPECIAL = new Set(['(idle)', '(program)', '(garbage collector)', '(root)'])

/** Self time per function of a .cpuprofile (V8's format), the top `limit` of them, and per area. */
export function summariseProfile(profile: CpuProfile, label: string, limit = 12): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const child of n.children ?? []) parent.set(child, n.id)
  const self = new Map<number, number>()
  const samples = profile.samples ?? []
  const deltas = profile.timeDeltas ?? []
  // timeDeltas[i] is the time before sample i; charge it to the sample that follows it.
  for (let i = 0; i < samples.length; i++) {
    const id = samples[i] as number
    self.set(id, (self.get(id) ?? 0) + Math.max(0, deltas[i + 1] ?? 0))
  }
  // A native frame (a C++ binding, a builtin) or a node internal says little alone: name its nearest
  // JS caller and, when that is node itself, the nearest caller in the gateway or a package too.
  const caller = (id: number, accept: (url: string) => boolean): ProfileNode['callFrame'] | null => {
    for (let up = parent.get(id); up !== undefined; up = parent.get(up)) {
      const frame = byId.get(up)?.callFrame
      if (frame?.url && accept(frame.url)) return frame
    }
    return null
  }
  const named = (f: ProfileNode['callFrame']): string => `${f.functionName || '(anonymous)'} ${locate(f.url, f.lineNumber)}`
  const totalUs = [...self.values()].reduce((a, b) => a + b, 0)
  let idleUs = 0
  const fns = new Map<string, { fn: string; where: string; us: number }>()
  const areas = new Map<string, number>()
  for (const [id, us] of self) {
    const frame = byId.get(id)?.callFrame
    if (!frame) continue
    if (frame.functionName === '(idle)') {
      idleUs += us
      continue
    }
    const special = SPECIAL.has(frame.functionName)
    const from = frame.url || special ? null : caller(id, () => true)
    const app = special || (frame.url && !frame.url.startsWith('node:')) ? null : caller(id, (url) => !url.startsWith('node:'))
    let where = frame.url ? locate(frame.url, frame.lineNumber) : from ? `native, from ${named(from)}` : '(native)'
    if (app && app !== from) where += ` ← ${named(app)}`
    const fn = frame.functionName || '(anonymous)'
    const key = `${fn} ${where}`
    const entry = fns.get(key) ?? { fn, where, us: 0 }
    entry.us += us
    fns.set(key, entry)
    const area = special ? frame.functionName : areaOf(frame.url || from?.url || '')
    areas.set(area, (areas.get(area) ?? 0) + us)
  }
  const busyUs = Math.max(1, totalUs - idleUs)
  const pct = (us: number): number => Math.round((us / busyUs) * 1000) / 10
  return {
    label,
    totalMs: Math.round(totalUs / 1000),
    idlePct: Math.round((idleUs / Math.max(1, totalUs)) * 1000) / 10,
    top: [...fns.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, limit)
      .map((e) => ({ fn: e.fn, where: e.where, selfMs: Math.round(e.us / 1000), pct: pct(e.us) })),
    areas: [...areas.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, limit)
      .map(([area, us]) => ({ area, selfMs: Math.round(us / 1000), pct: pct(us) }))
  }
}

/**
 * Samples a gateway process (started with cpuProfile) while fn runs, saves the raw profile
 * (open it in Chrome DevTools) and summarises it.
 */
export async function profileWhile(
  target: { profile(): Promise<() => Promise<CpuProfile>> },
  label: string,
  saveAs: string,
  fn: () => Promise<unknown>
): Promise<ProfileSummary> {
  const stop = await target.profile()
  let profile: CpuProfile | undefined
  try {
    await fn()
  } finally {
    profile = await stop()
  }
  await writeFile(saveAs, JSON.stringify(profile))
  return summariseProfile(profile, label)
}

/** Profiles this process while fn runs (for bookkeeping measured in-process, scenario 6). */
export async function profileInProcess(label: string, fn: () => Promise<void>): Promise<ProfileSummary> {
  const session = new Session()
  session.connect()
  try {
    await session.post('Profiler.enable')
    await session.post('Profiler.setSamplingInterval', { interval: 200 })
    await session.post('Profiler.start')
    let summary: ProfileSummary | undefined
    try {
      await fn()
    } finally {
      const { profile } = await session.post('Profiler.stop')
      await session.post('Profiler.disable')
      // The inspector's own types describe the same shape as a .cpuprofile file.
      summary = summariseProfile(profile as unknown as CpuProfile, label)
    }
    return summary
  } finally {
    session.disconnect()
  }
}

function locate(url: string, line: number): string {
  if (!url) return '(native)'
  const path = url.startsWith('file://') ? new URL(url).pathname : url
  const shown = path.startsWith('/') ? relative(REPO_ROOT, path) : path
  return `${shown}:${line + 1}`
}

/** Where code lives: a gateway directory, a package, a node module; native code counts for its JS caller. */
function areaOf(url: string): string {
  if (!url) return 'native (no JS caller)'
  if (url.startsWith('node:')) {
    const m = /^node:(internal\/[^/]+|[^/]+)/.exec(url)
    return `node ${m ? m[1] : url}`
  }
  const path = url.startsWith('file://') ? new URL(url).pathname : url
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path)
  if (pkg) return pkg[1] as string
  const rel = relative(REPO_ROOT, path)
  const dir = /^(src\/[^/]+(?:\/[^/]+)?)\//.exec(rel)
  return dir ? (dir[1] as string) : rel
}
