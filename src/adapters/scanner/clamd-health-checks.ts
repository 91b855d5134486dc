/**
 * What the pool knows of each clamd endpoint, and the checks that keep it current: PING, then a
 * scan of the EICAR test string that must be detected (a clamd without signatures answers PONG
 * and calls everything clean). An endpoint gets no scans before a check saw it detect EICAR.
 * With periodic checks off, the check before first use (or the first readiness question) is
 * the only one; connect attempts and finished scans still update the health.
 */
import { Readable } from 'node:stream'
import type { ScannerEndpoint } from '../../ports/scanner.ts'
import { ping } from './clamd-commands.ts'
import { instream } from './clamd-instream.ts'

export interface EndpointState {
  readonly endpoint: ScannerEndpoint
  readonly index: number
  healthy: boolean
  /** Scans holding one of its slots. */
  inFlight: number
  checkedAt: number | null
  detail: string | null
  /** Rank of its latest failure among all failures (0: never failed). */
  failedSeq: number
  /** Its latest EICAR check detected the test file. False before the first one, and after one that found nothing (a clamd without signatures would call every file clean): no scans go there. */
  verified: boolean
  /** What the latest EICAR check detected, for readiness. */
  eicar: string | null
  /** When the latest check ended, null before the first. */
  probedAt: number | null
  /** The check under way, shared by everyone who waits for it. */
  checking: Promise<void> | null
  timer: NodeJS.Timeout | undefined
}

export interface HealthCheckOptions {
  /** Time between the end of one check and the next, per endpoint; 0: no periodic checks (one before first use). */
  healthIntervalMs: number
  connectTimeoutMs: number
  /** How long a check waits for PONG, and for the EICAR verdict, once connected. */
  pingTimeoutMs: number
}

export function newEndpointState(endpoint: ScannerEndpoint, index: number): EndpointState {
  return {
    endpoint, index, healthy: false, inFlight: 0, checkedAt: null, detail: 'not checked yet',
    failedSeq: 0, verified: false, eicar: null, probedAt: null, checking: null, timer: undefined
  }
}

export class ClamdHealthChecks {
  readonly #states: EndpointState[]
  readonly #options: HealthCheckOptions
  /** Runs after every check: the health it changed may free or block slots. */
  readonly #onChange: () => void
  readonly #stop = new AbortController()
  #failures = 0

  constructor(states: EndpointState[], options: HealthCheckOptions, onChange: () => void) {
    this.#states = states
    this.#options = options
    this.#onChange = onChange
    // The first check runs at once, so /readyz knows within moments of startup.
    if (options.healthIntervalMs > 0) for (const state of states) this.start(state)
  }

  /** How many failures were recorded so far: a failure ranked above a count taken earlier came later. */
  get failures(): number {
    return this.#failures
  }

  /** detail null: healthy. Every failure gets a new rank, even on an endpoint already down. */
  record(state: EndpointState, detail: string | null): void {
    state.healthy = detail === null
    state.detail = detail
    state.checkedAt = Date.now()
    if (detail !== null) state.failedSeq = ++this.#failures
  }

  // One check at a time per endpoint, chained by timeouts, not an interval: checks never overlap.
  start(state: EndpointState): void {
    if (state.checking || this.#stop.signal.aborted) return
    clearTimeout(state.timer)
    state.checking = this.#check(state)
  }

  /**
   * Ready when an endpoint that gets scans is healthy, from the checks' cached results: it never
   * probes clamd more often than the checks do. Waits for the first check of endpoints that had
   * none yet (with periodic checks off, that one check starts here), so a caller asking at
   * startup gets an answer rather than "not checked yet".
   */
  async readiness(): Promise<{ ok: boolean; detail: string }> {
    const first = this.#states.filter((s) => s.probedAt === null)
    for (const state of first) this.start(state)
    await Promise.all(first.map((s) => s.checking))
    const describe = (s: EndpointState) =>
      s.verified && s.healthy ? `detected the EICAR test file as ${s.eicar}` : s.verified ? `${s.detail} (passed its last EICAR check)` : (s.detail ?? 'not checked yet')
    return {
      ok: this.#states.some((s) => s.verified && s.healthy),
      detail: this.#states.map((s) => `${s.endpoint.url}: ${describe(s)}`).join('; ')
    }
  }

  close(): void {
    this.#stop.abort()
    for (const state of this.#states) clearTimeout(state.timer)
  }

  async #check(state: EndpointState): Promise<void> {
    const { connectTimeoutMs, pingTimeoutMs, healthIntervalMs } = this.#options
    let detail: string | null = null
    try {
      const signal = this.#stop.signal
      await ping(state.endpoint, { connectTimeoutMs, timeoutMs: pingTimeoutMs, signal })
      const probe = { connectTimeoutMs, idleTimeoutMs: pingTimeoutMs, totalTimeoutMs: pingTimeoutMs, signal }
      const { outcome } = await instream(state.endpoint, Readable.from([eicarTestFile()]), probe)
      // Only an answer changes what we know of its signatures: an outage says nothing about them.
      state.verified = outcome.result === 'infected'
      state.eicar = outcome.result === 'infected' ? outcome.signature : null
      if (outcome.result === 'clean') detail = 'answered OK to the EICAR test file: no signatures loaded? No scans go there until it detects it'
      if (outcome.result === 'unscannable') detail = `could not scan the EICAR test file (${outcome.reason}): no scans go there until it detects it`
    } catch (err) {
      detail = err instanceof Error ? err.message : String(err)
    }
    state.checking = null
    if (this.#stop.signal.aborted) return
    state.probedAt = Date.now()
    this.record(state, detail)
    this.#onChange()
    if (healthIntervalMs > 0) {
      state.timer = setTimeout(() => this.start(state), healthIntervalMs)
      state.timer.unref()
    }
  }
}

/** The EICAR test string, assembled at run time so this source file is not itself detected. */
export function eicarTestFile(): Buffer {
  return Buffer.from('X5O!P%@AP[4\\PZX54(P^)7CC)7}$' + 'EICAR-STANDARD-ANTIVIRUS-' + 'TEST-FILE!$H+H*')
}
