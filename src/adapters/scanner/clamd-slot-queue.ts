/**
 * The line of scans waiting for a clamd slot, and which endpoint each gets. A healthy one first
 * (fewest scans, round-robin among ties); when every healthy one is full, the scan waits in line,
 * in arrival order. With none healthy it tries the others, least recently failed first, so a
 * clamd that is back is used before the next health check notices.
 */
import { ScannerError } from '../../ports/scanner.ts'
import type { EndpointState } from './clamd-health-checks.ts'

export interface SlotRequest {
  /** Endpoints this scan already failed to connect to. */
  readonly tried: Set<EndpointState>
  /** Failures ranked above this happened while the scan looked for a slot: it counts them as its own. */
  readonly since: number
}

export interface SlotChoiceContext {
  states: EndpointState[]
  /** Scans at once per endpoint. */
  limit: number
  /** Where the round-robin among equally busy endpoints goes on; moved by each choice among healthy ones. */
  rotation: { cursor: number }
  /** Starts a check of an endpoint that has not passed one yet. */
  check(state: EndpointState): void
}

interface Waiter extends SlotRequest {
  grant(state: EndpointState | null): void
  fail(err: ScannerError): void
}

export class SlotQueue {
  readonly #choice: SlotChoiceContext
  /** In arrival order; each free slot goes to the first waiter that can use it. */
  readonly #waiters: Waiter[] = []
  #closed = false

  constructor(choice: SlotChoiceContext) {
    this.#choice = choice
  }

  /** Resolves with an endpoint whose slot is now held, or null when no endpoint is left to try. */
  wait(request: SlotRequest, signal: AbortSignal): Promise<EndpointState | null> {
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
        ...request,
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
      this.dispatch()
    })
  }

  /** Hands out free slots in arrival order; runs after every change of load or health. */
  dispatch(): void {
    for (let i = 0; i < this.#waiters.length; ) {
      const waiter = this.#waiters[i] as Waiter
      const pick = chooseEndpoint(waiter, this.#choice)
      if (pick === 'wait') {
        i++
        continue
      }
      this.#waiters.splice(i, 1)
      if (pick) pick.inFlight++
      waiter.grant(pick)
    }
  }

  /** Refuses every waiting scan and every later one. */
  close(): void {
    this.#closed = true
    for (const waiter of this.#waiters.splice(0)) waiter.fail(new ScannerError('aborted', 'scanner is closed'))
  }
}

/** An endpoint with a free slot, 'wait' for one, or null when no endpoint is left to try. */
function chooseEndpoint({ tried, since }: SlotRequest, context: SlotChoiceContext): EndpointState | null | 'wait' {
  const { states, limit } = context
  // An unhealthy endpoint that failed while this scan waited is as good as tried.
  const open = states.filter((s) => s.verified && !tried.has(s) && (s.healthy || s.failedSeq <= since))
  if (open.length === 0) return awaitFirstCheck({ tried, since }, context)
  const healthy = open.filter((s) => s.healthy)
  if (healthy.length > 0) {
    const free = healthy.filter((s) => s.inFlight < limit)
    return free.length > 0 ? leastBusy(free, context) : 'wait'
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
function awaitFirstCheck({ tried, since }: SlotRequest, { states, check }: SlotChoiceContext): 'wait' | null {
  const candidates = states.filter((s) => !s.verified && !tried.has(s) && s.failedSeq <= since)
  for (const s of candidates) check(s)
  return candidates.some((s) => s.checking) ? 'wait' : null
}

/** Fewest scans in flight; among ties the first at or after the round-robin cursor. */
function leastBusy(free: EndpointState[], { states, rotation }: SlotChoiceContext): EndpointState {
  const n = states.length
  const distance = (s: EndpointState) => (s.index - rotation.cursor + n) % n
  const best = free.reduce((a, b) => (b.inFlight < a.inFlight || (b.inFlight === a.inFlight && distance(b) < distance(a)) ? b : a))
  rotation.cursor = (best.index + 1) % n
  return best
}
