import { backoffMs, type StoredStatus } from '../domain/upload-state.ts'
import type { StatusChange } from '../ports/job-queue.ts'
import { ObjectChangedError, type Area } from '../ports/object-store.ts'
import { ScannerError } from '../ports/scanner.ts'
import type { Verdict } from '../ports/upload-record.ts'
import type { JobKind } from './job-kind.ts'
import { IntegrityError, notSent } from './scan-step.ts'

export interface RetryOptions {
  maxAttempts: number
  retryBaseMs: number
  retryMaxMs: number
  /** A failed upload whose last error came from the infrastructure is tried again this long after. */
  failedRetryAfterMs: number
  /** How many such automatic rounds it gets before it waits for an operator. */
  failedRetryRounds: number
}

/** What the policy needs to know of an error. */
export interface ErrorFacts {
  message: string
  /** The scanner could not be reached: says nothing about the file, and the worker holds back. */
  outage: boolean
  /** The failure says something about the bytes themselves: another automatic round would not help. */
  aboutTheBytes: boolean
}

export function errorFacts(err: unknown): ErrorFacts {
  return {
    message: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
    outage: err instanceof ScannerError && (err.code === 'unavailable' || err.code === 'connect_timeout'),
    aboutTheBytes: err instanceof IntegrityError || err instanceof ObjectChangedError
  }
}

/** The facts of a job that failed, as of its claim. */
export interface RetryFacts {
  kind: JobKind
  status: StoredStatus
  location: Area
  attempts: number
  failedRounds: number
  error: ErrorFacts
  /** For a given-up promotion: whether its production copy was withdrawn; undefined until asked. */
  withdrawn?: boolean
  now: number
  /** 0..1: where in its range the backoff falls (Math.random() in production). */
  random: number
  /** When the next rolling rescan would be due, for a clean object whose rescan is given up. */
  nextRescanAt: number
}

export interface RetryLog {
  level: 'warn' | 'error'
  msg: string
  fields: Record<string, unknown>
}

/** Write `change`; `failed`: tag the object as failed first and send the upload.failed event with it. */
export interface RetryWrite {
  action: 'write'
  change: StatusChange
  log: RetryLog | null
  failed: boolean
}

/** withdraw: withdraw the production copy first, then ask again with `withdrawn` set. */
export type RetryDecision = { action: 'withdraw' } | RetryWrite

/**
 * Transient failure: try again later with backoff kept in the store, or give up. A scanner that
 * cannot be reached says nothing about the file: that try is not counted, so an outage of clamd
 * leaves uploads pending (never failed, never promoted) until it is back.
 */
export function decideRetry(f: RetryFacts & { withdrawn: boolean }, options: RetryOptions): RetryWrite
export function decideRetry(f: RetryFacts, options: RetryOptions): RetryDecision
export function decideRetry(f: RetryFacts, options: RetryOptions): RetryDecision {
  const { error, now, attempts } = f
  const delay = backoffMs(attempts, options.retryBaseMs, options.retryMaxMs, () => f.random)
  const givingUp = attempts >= options.maxAttempts && !error.outage
  const retry = { lastError: error.message, ...(error.outage ? { refundAttempt: true } : {}) }
  const write = (change: StatusChange, log: RetryLog | null, failed = false): RetryWrite => ({ action: 'write', change, log, failed })
  const logError = (msg: string, fields: Record<string, unknown> = {}): RetryLog => ({ level: 'error', msg, fields: { attempts, ...fields } })

  if (f.kind === 'rescan') {
    // A rescan that keeps failing leaves the stored verdict as it is and waits for the next turn.
    if (!givingUp) return write({ status: f.status, ...retry, nextScanAt: now + delay }, null)
    const nextScanAt = f.status === 'clean' ? f.nextRescanAt : null
    return write({ status: f.status, ...retry, nextScanAt, resetAttempts: true, refundAttempt: false, rescanOutcome: 'failed' }, null)
  }
  if (f.status === 'requarantining') {
    // A detected object must leave production: this is retried for as long as it takes.
    const log = givingUp ? logError('cannot take a detected object out of production yet; still trying') : null
    return write({ status: 'requarantining', ...retry, runAt: now + delay }, log)
  }
  if (givingUp && f.location === 'production' && f.status === 'scanning') {
    // An adopted object that cannot be scanned is not verified: it leaves production as unscannable.
    const verdict: Verdict = { result: 'unscannable', signature: null, reason: `could not be scanned: ${error.message}`, engine: notSent, signatureVersion: null }
    return write(
      { status: 'requarantining', verdict, scannedAt: now, lastError: error.message, resetAttempts: true, runAt: now },
      logError('adopted object could not be scanned: taking it out of production')
    )
  }
  if (givingUp && f.status === 'promoting') {
    if (f.withdrawn === undefined) return { action: 'withdraw' }
    if (!f.withdrawn) {
      // Not failed while a copy may be readable in production: the promotion goes on being retried.
      return write({ status: 'promoting', ...retry, runAt: now + delay }, logError('promotion keeps failing and its production copy cannot be withdrawn; still trying'))
    }
  }
  if (givingUp) {
    // An outage of the store or of the scanner says nothing about the file: another round later, a few times.
    const again = !error.aboutTheBytes && f.failedRounds < options.failedRetryRounds
    const failedRetryAt = again ? now + options.failedRetryAfterMs : null
    const msg = `${f.status === 'promoting' ? 'promotion' : 'scan'} failed${again ? ', to be tried again later' : ' for good'}`
    return write({ status: 'failed', lastError: error.message, failedRetryAt, rescanOutcome: 'failed' }, logError(msg, { failedRetryAt }), true)
  }
  // A clean verdict is kept: only the promotion is retried.
  const log: RetryLog = { level: 'warn', msg: error.outage ? 'scanner unreachable, will retry' : 'transient error, will retry', fields: { attempts, retryInMs: delay } }
  return write({ status: f.status === 'promoting' ? 'promoting' : 'pending', ...retry, runAt: now + delay }, log)
}
