/**
 * Scan slots and health for a set of clamd endpoints. A scan takes a slot on a healthy endpoint
 * (fewest scans first, round-robin among ties) and waits in line when every healthy one is full.
 * With none healthy it tries the others, least recently failed first, so a clamd that is back
 * is used before the next health check notices. Connect attempts, finished scans and periodic
 * checks (PING, then a scan of the EICAR test string that must be detected: a clamd without
 * signatures answers PONG and calls everything clean) keep the health current.
 * An endpoint gets no scans before a check saw it detect EICAR: a scan that finds none checks
 * those at once and waits for the result. With periodic checks off, that (or the first readiness
 * question) is the only time an endpoint is checked.
 */
import { ScannerError, type EndpointHealth } from '../../ports/scanner.ts'
import { Readable } from 'node:stream'
import { connectClamd, eicarTestFile, instream, ping, type ClamdConnection, type ClamdEndpoint } from './clamd-client.ts'

export interface EndpointPoolOptions {
  /** Scans at once per endpoint. */
  maxPerEndpoint: number
  /** Time between the end of one check and the next, per endpoint; 0: no periodic checks (one before first use). */
  healthIntervalMs: number
  connectTimeoutMs: number
  /** How long a health check waits for PONG once connected. */
  pingTimeoutMs: number
}

/** A connection that holds a slot of its endpoint. */
export interface Lease {
  connection: ClamdConnection
  /** When the slot was granted: a scan's total timeout starts here, not in the queue. */
  grantedAt: number
  /** Frees the slot; scanned: clamd gave a verdict, proof that it is healthy. Later calls do nothing. */
  release(scanned: boolean): void
}

interface EndpointState {
  readonly endpoint: ClamdEndpoint
  readonly index: number
  healthy: boolean
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

interface Waiter {
  /** Endpoints this scan already failed to connect to. */
  readonly tried: Set<EndpointState>
  /** Failures ranked above this happened while the scan looked for a slot: it counts them as its own. */
  readonly since: number
  grant(state: EndpointState | null): void
  fail(err: ScannerError): void
}

export class ClamdEndpointPool {
  readonly #options: EndpointPoolOptions
  readonly #states: EndpointState[]
  /** In arrival order; each free slot goes to the first waiter that can use it. */
  readonly #waiters: Waiter[] = []
  readonly #stopChecks = new AbortController()
  #failures = 0
  #cursor = 0
  #closed = false

  constructor(endpoints: ClamdEndpoint[], options: EndpointPoolOptions) {
    if (!Number.isInteger(options.maxPerEndpoint) || options.maxPerEndpoint < 1) {
      throw new Error(`maxPerEndpoint must be a positive integer, got ${options.maxPerEndpoint}`)
    }
    if (!(options.healthIntervalMs >= 0)) throw new Error(`healthIntervalMs must be 0 or more, got ${options.healthIntervalMs}`)
    this.#options = options
    this.#states = endpoints.map((endpoint, index) => ({
      endpoint,
      index,
      healthy: false,
      inFlight: 0,
      checkedAt: null,
      detail: 'not checked yet',
      failedSeq: 0,
      verified: false,
      eicar: null,
      probedAt: null,
      checking: null,
      timer: undefined
    }))
    // The first check runs at once, so /readyz knows within moments of startup.
    if (options.healthIntervalMs > 0) for (const state of this.#states) this.#startCheck(state)
  }

  snapshot(): EndpointHealth[] {
    return this.#states.map((s) => ({
      endpoint: s.endpoint.url,
      healthy: s.healthy,
      inFlight: s.inFlight,
      limit: this.#options.maxPerEndpoint,
      checkedAt: s.checkedAt,
      detail: s.detail,
      verified: s.verified
    }))
  }

  /**
   * Ready when an endpoint that gets scans is healthy, from the checks' cached results: it never
   * probes clamd more often than the checks do. Waits for the first check of endpoints that had
   * none yet (with periodic checks off, that one check starts here), so a caller asking at
   * startup gets an answer rather than "not checked yet".
   */
  async readiness(): Promise<{ ok: boolean; detail: string }> {
    const first = this.#states.filter((s) => s.probedAt === null)
    for (const state of first) this.#startCheck(state)
    await Promise.all(first.map((s) => s.checking))
    const describe = (s: EndpointState) =>
      s.verified && s.healthy ? `detected the EICAR test file as ${s.eicar}` : s.verified ? `${s.detail} (passed its last EICAR check)` : (s.detail ?? 'not checked yet')
    return {
      ok: this.#states.some((s) => s.verified && s.healthy),
      detail: this.#states.map((s) => `${s.endpoint.url}: ${describe(s)}`).join('; ')
    }
  }

  /** Healthy endpoints first, for requests that take no slot (VERSION). */
  byHealth(): ClamdEndpoint[] {
    return [...this.#states].sort((a, b) => Number(b.healthy) - Number(a.healthy)).map((s) => s.endpoint)
  }

  /**
   * A connection with a slot. Only connect failures move on to another endpoint (nothing was
   * sent yet); when none is left, throws 'unavailable' or 'connect_timeout'.
   */
  async connect(signal: AbortSignal): Promise<Lease> {
    const tried = new Set<EndpointState>()
    const since = this.#failures
    const failures: ScannerError[] = []
    for (;;) {
      const state = await this.#slot(tried, since, signal)
      if (!state) throw this.#unreachable(failures, tried, since)
      tried.add(state)
      const grantedAt = Date.now()
      try {
        const connection = await connectClamd(state.endpoint, { connectTimeoutMs: this.#options.connectTimeoutMs, signal })
        return { connection, grantedAt, release: this.#releaser(state) }
      } catch (err) {
        const error = err as ScannerError // connectClamd rejects with nothing else
        const outage = error.code === 'unavailable' || error.code === 'connect_timeout'
        if (outage) {
          this.#setHealth(state, error.message)
          failures.push(error)
        }
        state.inFlight--
        this.#dispatch()
        if (!outage) throw error
      }
    }
  }

  /** Stops health checks and refuses every waiting scan; scans holding a slot are the caller's to abort. */
  close(): void {
    this.#closed = true
    this.#stopChecks.abort()
    for (const state of this.#states) clearTimeout(state.timer)
    for (const waiter of this.#waiters.splice(0)) waiter.fail(new ScannerError('aborted', 'scanner is closed'))
  }

  /** Resolves with an endpoint whose slot is now held, or null when no endpoint is left to try. */
  #slot(tried: Set<EndpointState>, since: number, signal: AbortSignal): Promise<EndpointState | null> {
    return new Promise((resolve, reject) => {
      const aborted = () => new ScannerError('aborted', 'scan aborted while waiting for a clamd slot', { cause: signal.reason })
      if (this.#closed) return reject(new ScannerError('aborted', 'scanner is closed'))
      if (signal.aborted) return reject(aborted())
      const onAbort = () => {
        const at = this.#waiters.indexOf(waiter)
        if (at >= 0) this.#waiters.splice(at, 1)
        reject(aborted())
      }
      const waiter: Waiter = {
        tried,
        since,
        grant: (state) => {
          signal.removeEventListener('abort', onAbort)
          resolve(state)
        },
        fail: (err) => {
          signal.removeEventListener('abort', onAbort)
          reject(err)
        }
      }
      signal.addEventListener('abort', onAbort, { once: true })
      this.#waiters.push(waiter)
      this.#dispatch()
    })
  }

  /** Hands out free slots in arrival order; runs after every change of load or health. */
  #dispatch(): void {
    for (let i = 0; i < this.#waiters.length; ) {
      const waiter = this.#waiters[i] as Waiter
      const pick = this.#pick(waiter)
      if (pick === 'wait') {
        i++
        continue
      }
      this.#waiters.splice(i, 1)
      if (pick) pick.inFlight++
      waiter.grant(pick)
    }
  }

  #pick({ tried, since }: Waiter): EndpointState | null | 'wait' {
    const limit = this.#options.maxPerEndpoint
    // An unhealthy endpoint that failed while this scan waited is as good as tried.
    const open = this.#states.filter((s) => s.verified && !tried.has(s) && (s.healthy || s.failedSeq <= since))
    if (open.length === 0) return this.#awaitFirstCheck(tried, since)
    const healthy = open.filter((s) => s.healthy)
    if (healthy.length > 0) {
      const free = healthy.filter((s) => s.inFlight < limit)
      return free.length > 0 ? this.#leastBusy(free) : 'wait'
    }
    // None healthy: the slots still hold, so a clamd that is back is not flooded at once.
    const free = open.filter((s) => s.inFlight < limit)
    if (free.length === 0) return 'wait'
    return free.reduce((best, s) => (s.failedSeq < best.failedSeq ? s : best))
  }

  /**
   * None verified: check the endpoints that have not passed a check (at once, not at the next
   * periodic check, so a clamd that is back is used without delay) and wait for the result, unless
   * one already failed while this scan waited. Scans that find no endpoint pause the worker
   * (an outage), which bounds how often this runs.
   */
  #awaitFirstCheck(tried: Set<EndpointState>, since: number): 'wait' | null {
    const candidates = this.#states.filter((s) => !s.verified && !tried.has(s) && s.failedSeq <= since)
    for (const s of candidates) this.#startCheck(s)
    return candidates.some((s) => s.checking) ? 'wait' : null
  }

  /** Fewest scans in flight; among ties the first at or after the round-robin cursor. */
  #leastBusy(free: EndpointState[]): EndpointState {
    const n = this.#states.length
    const distance = (s: EndpointState) => (s.index - this.#cursor + n) % n
    const best = free.reduce((a, b) => (b.inFlight < a.inFlight || (b.inFlight === a.inFlight && distance(b) < distance(a)) ? b : a))
    this.#cursor = (best.index + 1) % n
    return best
  }

  #releaser(state: EndpointState): (scanned: boolean) => void {
    let released = false
    return (scanned) => {
      if (released) return
      released = true
      if (scanned && state.verified) this.#setHealth(state, null)
      state.inFlight--
      this.#dispatch()
    }
  }

  /** detail null: healthy. Every failure gets a new rank, even on an endpoint already down. Callers dispatch. */
  #setHealth(state: EndpointState, detail: string | null): void {
    state.healthy = detail === null
    state.detail = detail
    state.checkedAt = Date.now()
    if (detail !== null) state.failedSeq = ++this.#failures
  }

  #unreachable(failures: ScannerError[], tried: Set<EndpointState>, since: number): ScannerError {
    const meanwhile = this.#states
      .filter((s) => !tried.has(s) && !s.healthy && s.failedSeq > since)
      .map((s) => `${s.endpoint.url} failed meanwhile: ${s.detail}`)
    const reasons = [...failures.map((f) => f.message), ...meanwhile]
    const code = failures.at(-1)?.code ?? 'unavailable'
    return new ScannerError(code, `no clamd endpoint reachable: ${reasons.join('; ') || 'none configured'}`, { cause: failures })
  }

  // One check at a time per endpoint, chained by timeouts, not an interval: checks never overlap.
  #startCheck(state: EndpointState): void {
    if (state.checking || this.#closed) return
    clearTimeout(state.timer)
    state.checking = this.#check(state)
  }

  async #check(state: EndpointState): Promise<void> {
    const { connectTimeoutMs, pingTimeoutMs, healthIntervalMs } = this.#options
    let detail: string | null = null
    try {
      const signal = this.#stopChecks.signal
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
    if (this.#closed) return
    state.probedAt = Date.now()
    this.#setHealth(state, detail)
    this.#dispatch()
    if (healthIntervalMs > 0) {
      state.timer = setTimeout(() => this.#startCheck(state), healthIntervalMs)
      state.timer.unref()
    }
  }
}
