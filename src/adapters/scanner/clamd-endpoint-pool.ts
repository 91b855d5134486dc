/**
 * Scan slots on a set of clamd endpoints, each slot with its connection. A scan waits in line
 * for a slot (clamd-slot-queue.ts) and fails over to another endpoint when it cannot connect.
 * Health checks (clamd-health-checks.ts), connect attempts and finished scans keep each
 * endpoint's health current.
 */
import { ScannerError, type EndpointHealth, type ScannerEndpoint } from '../../ports/scanner.ts'
import { connectClamd, type ClamdConnection } from './clamd-connection.ts'
import { ClamdHealthChecks, newEndpointState, type EndpointState, type HealthCheckOptions } from './clamd-health-checks.ts'
import { SlotQueue, type SlotRequest } from './clamd-slot-queue.ts'

export interface EndpointPoolOptions extends HealthCheckOptions {
  /** Scans at once per endpoint. */
  maxPerEndpoint: number
}

/** A connection that holds a slot of its endpoint until freed. Freeing twice does nothing. */
export interface ClamdSlot {
  connection: ClamdConnection
  /** When the slot was granted: a scan's total timeout starts here, not in the queue. */
  grantedAt: number
  /** Frees the slot: clamd gave a verdict, proof that it is healthy. */
  freeWithVerdict(): void
  /** Frees the slot, saying nothing about the endpoint's health. */
  free(): void
}

export class ClamdEndpointPool {
  readonly #states: EndpointState[]
  readonly #checks: ClamdHealthChecks
  readonly #queue: SlotQueue
  readonly #options: EndpointPoolOptions

  constructor(endpoints: ScannerEndpoint[], options: EndpointPoolOptions) {
    if (!Number.isInteger(options.maxPerEndpoint) || options.maxPerEndpoint < 1) {
      throw new Error(`maxPerEndpoint must be a positive integer, got ${options.maxPerEndpoint}`)
    }
    if (!(options.healthIntervalMs >= 0)) throw new Error(`healthIntervalMs must be 0 or more, got ${options.healthIntervalMs}`)
    this.#options = options
    this.#states = endpoints.map(newEndpointState)
    this.#queue = new SlotQueue({
      states: this.#states,
      limit: options.maxPerEndpoint,
      rotation: { cursor: 0 },
      check: (state) => this.#checks.start(state)
    })
    this.#checks = new ClamdHealthChecks(this.#states, options, () => this.#queue.dispatch())
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

  readiness(): Promise<{ ok: boolean; detail: string }> {
    return this.#checks.readiness()
  }

  /** Healthy endpoints first, for requests that take no slot (VERSION). */
  byHealth(): ScannerEndpoint[] {
    return [...this.#states].sort((a, b) => Number(b.healthy) - Number(a.healthy)).map((s) => s.endpoint)
  }

  /**
   * A connection with a slot. Only connect failures move on to another endpoint (nothing was
   * sent yet); when none is left, throws 'unavailable' or 'connect_timeout'.
   */
  async takeSlot(signal: AbortSignal): Promise<ClamdSlot> {
    const request: SlotRequest = { tried: new Set<EndpointState>(), since: this.#checks.failures }
    const failures: ScannerError[] = []
    for (;;) {
      const state = await this.#queue.wait(request, signal)
      if (!state) throw this.#unreachable(failures, request)
      request.tried.add(state)
      const grantedAt = Date.now()
      try {
        const connection = await connectClamd(state.endpoint, { connectTimeoutMs: this.#options.connectTimeoutMs, signal })
        return { connection, grantedAt, ...this.#freeing(state) }
      } catch (err) {
        const error = err as ScannerError // connectClamd rejects with nothing else
        const outage = error.code === 'unavailable' || error.code === 'connect_timeout'
        if (outage) {
          this.#checks.record(state, error.message)
          failures.push(error)
        }
        state.inFlight--
        this.#queue.dispatch()
        if (!outage) throw error
      }
    }
  }

  /** Stops health checks and refuses every waiting scan; scans holding a slot are the caller's to abort. */
  close(): void {
    this.#checks.close()
    this.#queue.close()
  }

  #freeing(state: EndpointState): Pick<ClamdSlot, 'free' | 'freeWithVerdict'> {
    let freed = false
    const free = (verdict: boolean) => {
      if (freed) return
      freed = true
      if (verdict && state.verified) this.#checks.record(state, null)
      state.inFlight--
      this.#queue.dispatch()
    }
    return { free: () => free(false), freeWithVerdict: () => free(true) }
  }

  #unreachable(failures: ScannerError[], { tried, since }: SlotRequest): ScannerError {
    const meanwhile = this.#states
      .filter((s) => !tried.has(s) && !s.healthy && s.failedSeq > since)
      .map((s) => `${s.endpoint.url} failed meanwhile: ${s.detail}`)
    const reasons = [...failures.map((f) => f.message), ...meanwhile]
    const code = failures.at(-1)?.code ?? 'unavailable'
    return new ScannerError(code, `no clamd endpoint reachable: ${reasons.join('; ') || 'none configured'}`, { cause: failures })
  }
}
