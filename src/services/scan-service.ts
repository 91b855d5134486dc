import { pipeline } from 'node:stream'
import type { Log } from '../ports/log.ts'
import type { Metrics } from '../ports/metrics.ts'
import { backoffMs, isReleasedVerdict } from '../domain/upload-state.ts'
import { ObjectChangedError, type ObjectStore } from '../ports/object-store.ts'
import { ScannerError, type ScanResult, type Scanner } from '../ports/scanner.ts'
import type { ScanRecord } from '../ports/history-store.ts'
import type { Claim, StatusChange } from '../ports/job-queue.ts'
import type { StateStore } from '../ports/state-store.ts'
import type { Verdict } from '../ports/upload-record.ts'
import type { EventOutbox } from './events.ts'
import { fence, LeaseLostError } from './lease-fence.ts'
import { detectionTags, verdictTags } from './object-tags.ts'
import type { PromoteService } from './promote-service.ts'
import type { RequarantineService } from './requarantine-service.ts'
import type { RescanPolicy } from './rescan-policy.ts'
import { StreamMeter } from './stream-meter.ts'
import { transition } from './transition.ts'

export type RunOutcome = 'done' | 'scanner-unavailable'

/** The engine recorded for a verdict the scanner was never asked about. */
const notSent = 'not sent to the scanner'

export interface ScanOptions {
  /** Files larger than this are not sent to the scanner: they are unscannable. */
  scannerMaxBytes: number
  maxAttempts: number
  retryBaseMs: number
  retryMaxMs: number
  /** Lease length, to re-check ownership before writing tags. */
  leaseMs: number
  /** A failed upload whose last error came from the infrastructure is tried again this long after. */
  failedRetryAfterMs: number
  /** How many such automatic rounds it gets before it waits for an operator. */
  failedRetryRounds: number
}

type AuditRow = Omit<ScanRecord, 'uploadId' | 'startedAt' | 'durationMs'>

/** The audit fields a verdict fills in. */
function auditOf(v: Verdict): Omit<AuditRow, 'endpoint' | 'bytes'> {
  return { outcome: v.result, signature: v.signature, detail: v.reason, engine: v.engine, signatureVersion: v.signatureVersion }
}

/** The audit fields of a try that ended without a verdict. */
function failedTry(detail: string): Omit<AuditRow, 'endpoint' | 'bytes'> {
  return { outcome: 'error', signature: null, detail, engine: null, signatureVersion: null }
}

/** The content did not arrive whole: no verdict may be drawn from it. */
class IntegrityError extends Error {
  override name = 'IntegrityError'
}

/** Failures that say something about the bytes themselves: another automatic round would not help. */
function aboutTheBytes(err: unknown): boolean {
  return err instanceof IntegrityError || err instanceof ObjectChangedError
}

/**
 * Runs one claimed job to its next state: scans a pending upload and records the verdict,
 * or hands a clean one to promotion. Every write is fenced by the claim, and every step can
 * be re-run after a crash with the same result.
 */
export class ScanService {
  readonly #objects: ObjectStore
  readonly #state: StateStore
  readonly #scanner: Scanner
  readonly #promote: PromoteService
  readonly #requarantine: RequarantineService
  readonly #rescans: RescanPolicy
  readonly #events: EventOutbox
  readonly #metrics: Metrics
  readonly #options: ScanOptions

  constructor(
    deps: {
      objects: ObjectStore
      state: StateStore
      scanner: Scanner
      promote: PromoteService
      requarantine: RequarantineService
      rescans: RescanPolicy
      events: EventOutbox
      metrics: Metrics
    },
    options: ScanOptions
  ) {
    this.#events = deps.events
    this.#objects = deps.objects
    this.#requarantine = deps.requarantine
    this.#rescans = deps.rescans
    this.#metrics = deps.metrics
    this.#state = deps.state
    this.#scanner = deps.scanner
    this.#promote = deps.promote
    this.#options = options
  }

  /**
   * Runs the claimed job one step further. `log` is already bound to the upload. Resolves
   * 'scanner-unavailable' when clamd could not be reached, so the worker can hold back.
   */
  async run(claim: Claim, signal: AbortSignal, log: Log): Promise<RunOutcome> {
    // The claim as the store now holds it: after a clean verdict it is promoting, and a failure
    // from then on must retry the promotion, never send the upload back to be scanned.
    let current = claim
    try {
      if (current.upload.status === 'promoting') {
        await this.#promote.promote(current, log, signal)
        return 'done'
      }
      if (current.upload.status === 'requarantining') {
        await this.#requarantine.requarantine(current, log, signal)
        return 'done'
      }
      const { verdict, version, bytes, sha256 } = await this.#scan(current, signal, log)
      const now = Date.now()
      const upload = current.upload
      const scanned = { verdict, scannedAt: now, scannedVersion: version, lastError: null, resetAttempts: true } as const
      // Adopted objects learn their size and hash from their first scan (and a changed production object its new ones).
      const measured = sha256 && sha256 !== upload.sha256 ? { size: bytes, sha256 } : {}

      if (claim.kind === 'rescan' && upload.status !== 'clean') {
        // A stored detection rescanned on demand (in quarantine, or tagged in place in production):
        // history only. A clean result never releases it. Its tag is set again, so a tag lost or
        // overwritten (by a worker that woke up late) is repaired.
        const keep = verdict.result === 'clean' ? {} : { verdict, scannedAt: now, scannedVersion: version }
        const tagged = verdict.result === 'clean' ? upload.verdict : verdict
        await fence(this.#state, current, this.#options.leaseMs, signal)
        await this.#objects.setTags(upload.location, upload.objectKey, detectionTags(upload.status as 'infected' | 'unscannable', upload.id, tagged, now, upload.location === 'production'), { signal })
        return this.#end(current, { status: upload.status, ...keep, nextScanAt: null, lastError: null, resetAttempts: true, rescanOutcome: verdict.result }, log)
      }
      if (upload.location === 'quarantine') {
        if (verdict.result === 'clean') {
          const promoting = { status: 'promoting', ...scanned, runAt: now + this.#options.leaseMs } as const
          if (!(await transition(this.#state, current, promoting, now))) return this.#lost(log)
          current = { ...current, kind: 'scan', upload: { ...upload, ...promoting, attempts: 0 } }
          await this.#promote.promote(current, log, signal)
          return 'done'
        }
        // Tag before the state says so: a crash in between re-runs the scan and tags again. A worker
        // that lost its lease must not tag over the new owner's result, hence the fence first.
        await fence(this.#state, current, this.#options.leaseMs, signal)
        await this.#objects.setTags('quarantine', upload.objectKey, verdictTags(verdict.result, upload.id, verdict, now), { signal })
        const events = this.#events.about(`upload.${verdict.result}`, { ...upload, verdict }, now)
        if (await transition(this.#state, current, { status: verdict.result, ...scanned, events }, now)) log.warn({ verdict }, `upload ${verdict.result}`)
        else this.#lost(log)
        return 'done'
      }

      // In production: a rescan of a clean object, or the first scan of an adopted one. A released
      // upload found with the very detection that was released stays; any other detection takes it out.
      if (verdict.result === 'clean' || (upload.released && isReleasedVerdict(upload.released, verdict))) {
        if (verdict.result !== 'clean') log.warn({ verdict }, 'released upload detected again with the verdict it was released with: left in production')
        await fence(this.#state, current, this.#options.leaseMs, signal)
        if (verdict.result === 'clean') await this.#objects.setTags('production', upload.objectKey, verdictTags('clean', upload.id, verdict, now), { signal })
        const first = upload.status === 'scanning'
        const change = {
          status: 'clean',
          ...scanned,
          ...measured,
          nextScanAt: this.#rescans.next(now),
          rescanOutcome: verdict.result,
          ...(first ? { events: this.#events.about('upload.clean', { ...upload, verdict }, now) } : {})
        } as const
        return this.#end(current, change, log)
      }
      const requarantining = { status: 'requarantining', ...scanned, ...measured, runAt: now + this.#options.leaseMs } as const
      if (!(await transition(this.#state, current, requarantining, now))) return this.#lost(log)
      // From here it is a step of the upload's own flow: its lease is kept in runAt.
      current = { ...current, kind: 'scan', upload: { ...upload, ...requarantining, attempts: 0 } }
      await this.#requarantine.requarantine(current, log, signal)
      return 'done'
    } catch (err) {
      if (signal.aborted) throw err
      if (err instanceof LeaseLostError) return this.#lost(log)
      return this.#retryOrFail(current, err, log, signal)
    }
  }

  async #end(claim: Claim, change: StatusChange, log: Log): Promise<RunOutcome> {
    if (!(await transition(this.#state, claim, change))) this.#lost(log)
    return 'done'
  }

  /** The verdict, the version of the object it was drawn from (null when nothing was read), and what was read. */
  async #scan(claim: Claim, signal: AbortSignal, log: Log): Promise<{ verdict: Verdict; version: string | null; bytes: number; sha256: string | null }> {
    const upload = claim.upload
    const startedAt = Date.now()
    if (upload.size > this.#options.scannerMaxBytes) {
      // Decided without the scanner (it may be down): the file is never sent.
      const reason = `larger than the scanner limit of ${this.#options.scannerMaxBytes} bytes`
      const verdict: Verdict = { result: 'unscannable', signature: null, reason, engine: notSent, signatureVersion: null }
      await this.#audit(upload.id, startedAt, { ...auditOf(verdict), endpoint: null, bytes: 0 })
      return { verdict, version: null, bytes: 0, sha256: null }
    }
    let result: ScanResult
    let version: string
    let expectedBytes = 0
    const meter = new StreamMeter()
    try {
      const { body, info } = await this.#objects.get(upload.location, upload.objectKey, signal)
      version = info.version
      expectedBytes = info.size
      pipeline(body, meter, () => {})
      result = await this.#scanner.scan(meter, signal)
    } catch (err) {
      await this.#audit(upload.id, startedAt, { ...failedTry(String((err as Error).message ?? err)), endpoint: null, bytes: meter.bytes })
      throw err
    }
    const outcome = result.outcome
    // A clean verdict on an upload counts only for the whole file: every byte read, and the same
    // bytes that were uploaded. In production the verdict is on what is served, whatever it is.
    const mismatch =
      upload.location === 'quarantine' ? meter.bytes !== upload.size || meter.sha256 !== upload.sha256 : meter.bytes !== expectedBytes
    if (outcome.result === 'clean' && mismatch) {
      const detail =
        upload.location === 'quarantine'
          ? `read ${meter.bytes} bytes with sha256 ${meter.sha256}, expected ${upload.size} bytes with sha256 ${upload.sha256}`
          : `read ${meter.bytes} bytes of a production object of ${expectedBytes} bytes`
      const engine = { engine: result.engine.engine, signatureVersion: result.engine.signatureVersion }
      await this.#audit(upload.id, startedAt, { ...failedTry(detail), ...engine, endpoint: result.endpoint, bytes: meter.bytes })
      throw new IntegrityError(`quarantined object does not match its upload: ${detail}`)
    }
    const verdict: Verdict = {
      result: outcome.result,
      signature: outcome.result === 'infected' ? outcome.signature : null,
      reason: outcome.result === 'unscannable' ? outcome.reason : null,
      engine: result.engine.engine,
      signatureVersion: result.engine.signatureVersion
    }
    await this.#audit(upload.id, startedAt, { ...auditOf(verdict), endpoint: result.endpoint, bytes: result.bytes })
    log.info({ outcome, endpoint: result.endpoint, ms: Date.now() - startedAt, rescan: claim.kind === 'rescan' }, 'scanned')
    return { verdict, version, bytes: meter.bytes, sha256: meter.sha256 }
  }

  /** Every try ends here, with a verdict or an error: the audit row and the metrics. */
  async #audit(uploadId: string, startedAt: number, row: AuditRow): Promise<void> {
    const durationMs = Date.now() - startedAt
    this.#metrics.scanEnded(row.outcome, durationMs / 1000)
    await this.#state.recordScan({ uploadId, startedAt, durationMs, ...row })
  }

  /**
   * Transient failure: try again later with backoff kept in the store, or give up as failed.
   * A scanner that cannot be reached says nothing about the file: that try is not counted, so
   * an outage of clamd leaves uploads pending (never failed, never promoted) until it is back.
   */
  async #retryOrFail(claim: Claim, err: unknown, log: Log, signal: AbortSignal): Promise<RunOutcome> {
    const upload = claim.upload
    const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err)
    const outage = err instanceof ScannerError && (err.code === 'unavailable' || err.code === 'connect_timeout')
    const now = Date.now()
    const delay = backoffMs(upload.attempts, this.#options.retryBaseMs, this.#options.retryMaxMs)
    const givingUp = upload.attempts >= this.#options.maxAttempts && !outage
    const retry = { lastError: message, ...(outage ? { refundAttempt: true } : {}) }
    let change: StatusChange
    if (claim.kind === 'rescan') {
      // A rescan that keeps failing leaves the stored verdict as it is and waits for the next turn.
      const nextScanAt = givingUp ? (upload.status === 'clean' ? this.#rescans.next(now) : null) : now + delay
      change = { status: upload.status, ...retry, nextScanAt, ...(givingUp ? { resetAttempts: true, refundAttempt: false, rescanOutcome: 'failed' } : {}) }
    } else if (upload.status === 'requarantining') {
      // A detected object must leave production: this is retried for as long as it takes.
      if (givingUp) log.error({ err, attempts: upload.attempts }, 'cannot take a detected object out of production yet; still trying')
      change = { status: 'requarantining', ...retry, runAt: now + delay }
    } else if (givingUp && upload.location === 'production' && upload.status === 'scanning') {
      // An adopted object that cannot be scanned is not verified: it leaves production as unscannable.
      log.error({ err, attempts: upload.attempts }, 'adopted object could not be scanned: taking it out of production')
      const verdict: Verdict = { result: 'unscannable', signature: null, reason: `could not be scanned: ${message}`, engine: notSent, signatureVersion: null }
      change = { status: 'requarantining', verdict, scannedAt: now, lastError: message, resetAttempts: true, runAt: now }
    } else if (givingUp && upload.status === 'promoting' && !(await this.#withdrawn(claim, log, signal))) {
      // Not failed while a copy may be readable in production: the promotion goes on being retried.
      log.error({ err, attempts: upload.attempts }, 'promotion keeps failing and its production copy cannot be withdrawn; still trying')
      change = { status: 'promoting', ...retry, runAt: now + delay }
    } else if (givingUp) {
      // An outage of the store or of the scanner says nothing about the file: another round later, a few times.
      const again = !aboutTheBytes(err) && upload.failedRounds < this.#options.failedRetryRounds
      const failedRetryAt = again ? now + this.#options.failedRetryAfterMs : null
      log.error({ err, attempts: upload.attempts, failedRetryAt }, `${upload.status === 'promoting' ? 'promotion' : 'scan'} failed${again ? ', to be tried again later' : ' for good'}`)
      try {
        await fence(this.#state, claim, this.#options.leaseMs, signal)
        await this.#objects.setTags(upload.location, upload.objectKey, detectionTags('failed', upload.id, upload.verdict, now, upload.location === 'production'), { signal })
      } catch (tagErr) {
        if (tagErr instanceof LeaseLostError) return this.#lost(log)
        log.error({ err: tagErr }, 'could not tag a failed upload')
      }
      change = { status: 'failed', lastError: message, failedRetryAt, rescanOutcome: 'failed', events: this.#events.about('upload.failed', upload, now, { error: message }) }
    } else {
      log.warn({ err, attempts: upload.attempts, retryInMs: delay }, outage ? 'scanner unreachable, will retry' : 'transient error, will retry')
      // A clean verdict is kept: only the promotion is retried.
      change = { status: upload.status === 'promoting' ? 'promoting' : 'pending', ...retry, runAt: now + delay }
    }
    if (!(await transition(this.#state, claim, change, now))) this.#lost(log)
    return outage ? 'scanner-unavailable' : 'done'
  }

  /** Whether a given-up promotion left no copy in production (see PromoteService.withdraw). */
  async #withdrawn(claim: Claim, log: Log, signal: AbortSignal): Promise<boolean> {
    try {
      return await this.#promote.withdraw(claim, signal)
    } catch (err) {
      if (err instanceof LeaseLostError) throw err
      log.error({ err }, 'could not withdraw the production copy of a failed promotion')
      return false
    }
  }

  #lost(log: Log): RunOutcome {
    log.warn({}, 'lease lost: another worker owns this upload now, result dropped')
    return 'done'
  }
}
