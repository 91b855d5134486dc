import { pipeline } from 'node:stream'
import type { Log } from '../ports/log.ts'
import type { Metrics } from '../ports/metrics.ts'
import { isReleasedVerdict } from '../domain/upload-state.ts'
import type { ObjectInfo, ObjectStore } from '../ports/object-store.ts'
import type { ScanResult, Scanner } from '../ports/scanner.ts'
import type { ScanHistory, ScanRecord } from '../ports/history-store.ts'
import type { Claim, JobQueue, StatusChange } from '../ports/job-queue.ts'
import type { Verdict } from '../ports/upload-record.ts'
import { noSlotToLeave, type JobStep, type StepContext, type StepResult } from './job-kind.ts'
import { FencedWrites, type LeaseClock } from './lease-fence.ts'
import { detectionTags, verdictTags } from './object-tags.ts'
import type { RescanPolicy } from './rescan-policy.ts'
import { StreamMeter } from './stream-meter.ts'
import { transition } from './transition.ts'
import type { UploadEvents } from './upload-events.ts'

/** The engine recorded for a verdict the scanner was never asked about. */
export const notSent = 'not sent to the scanner'

export interface ScanStepOptions {
  /** Files larger than this are not sent to the scanner: they are unscannable. */
  scannerMaxBytes: number
  /** Lease length, to re-check ownership before writing tags. */
  leaseMs: number
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
export class IntegrityError extends Error {
  override name = 'IntegrityError'
}

/**
 * Scans an upload (or rescans a stored object) and writes what its verdict means: a detection
 * tagged and recorded, a clean production object scheduled for its next rescan, or the next step
 * (promoting, requarantining) that the job runner hands the job on to. Every object-store write
 * is fenced by the claim, and a re-run after a crash ends the same way.
 */
export class ScanStep implements JobStep {
  readonly #objects: ObjectStore
  readonly #jobs: JobQueue
  readonly #scanHistory: ScanHistory
  readonly #scanner: Scanner
  readonly #rescans: RescanPolicy
  readonly #events: UploadEvents
  readonly #metrics: Metrics
  readonly #options: ScanStepOptions
  /** Every object-store write makes sure of the lease first. */
  readonly #writes: FencedWrites

  constructor(
    deps: { objects: ObjectStore; jobs: JobQueue; scanHistory: ScanHistory; scanner: Scanner; rescans: RescanPolicy; events: UploadEvents; metrics: Metrics; leases?: LeaseClock },
    options: ScanStepOptions
  ) {
    this.#objects = deps.objects
    this.#jobs = deps.jobs
    this.#scanHistory = deps.scanHistory
    this.#scanner = deps.scanner
    this.#rescans = deps.rescans
    this.#events = deps.events
    this.#metrics = deps.metrics
    this.#options = options
    this.#writes = new FencedWrites(deps.jobs, deps.objects, options.leaseMs, deps.leases)
  }

  async run(claim: Claim, signal: AbortSignal, log: Log, context?: StepContext): Promise<StepResult> {
    const { verdict, version, bytes, sha256, info } = await this.#scan(claim, signal, log, context?.scanned ?? noSlotToLeave)
    const now = Date.now()
    const upload = claim.upload
    const scanned = { verdict, scannedAt: now, scannedVersion: version, lastError: null, resetAttempts: true } as const
    // Adopted objects learn their size and hash from their first scan (and a changed production object its new ones).
    const measured = sha256 && sha256 !== upload.sha256 ? { size: bytes, sha256 } : {}
    const write = async (change: StatusChange): Promise<StepResult> => ({ change, written: await transition(this.#jobs, claim, change, now) })

    if (claim.kind === 'rescan' && upload.status !== 'clean') {
      // A stored detection rescanned on demand (in quarantine, or tagged in place in production):
      // history only. A clean result never releases it. Its tag is set again, so a tag lost or
      // overwritten (by a worker that woke up late) is repaired.
      const keep = verdict.result === 'clean' ? {} : { verdict, scannedAt: now, scannedVersion: version }
      const tagged = verdict.result === 'clean' ? upload.verdict : verdict
      await this.#writes.setTags(claim, upload.location, upload.objectKey, detectionTags(upload.status as 'infected' | 'unscannable', upload.id, tagged, now, upload.location === 'production'), { signal })
      return write({ status: upload.status, ...keep, nextScanAt: null, lastError: null, resetAttempts: true, rescanOutcome: verdict.result })
    }
    if (upload.location === 'quarantine') {
      // Clean: handed on to the promotion, which the runner runs at once under the same lease,
      // with what the read said of the object (the copy needs no HEAD of its own).
      if (verdict.result === 'clean') return { ...(await write({ status: 'promoting', ...scanned, runAt: now + this.#options.leaseMs })), ...(info ? { source: info } : {}) }
      // Tag before the state says so: a crash in between re-runs the scan and tags again. A worker
      // that lost its lease must not tag over the new owner's result: the write is fenced.
      await this.#writes.setTags(claim, 'quarantine', upload.objectKey, verdictTags(verdict.result, upload.id, verdict, now), { signal })
      const events = this.#events.about(`upload.${verdict.result}`, { ...upload, verdict }, now)
      const result = await write({ status: verdict.result, ...scanned, events })
      if (result.written) log.warn({ verdict }, `upload ${verdict.result}`)
      return result
    }

    // In production: a rescan of a clean object, or the first scan of an adopted one. A released
    // upload found with the very detection that was released stays; any other detection takes it out.
    if (verdict.result === 'clean' || (upload.released && isReleasedVerdict(upload.released, verdict))) {
      if (verdict.result === 'clean') await this.#writes.setTags(claim, 'production', upload.objectKey, verdictTags('clean', upload.id, verdict, now), { signal })
      else log.warn({ verdict }, 'released upload detected again with the verdict it was released with: left in production')
      const first = upload.status === 'scanning'
      return write({
        status: 'clean',
        ...scanned,
        ...measured,
        nextScanAt: this.#rescans.next(now),
        rescanOutcome: verdict.result,
        ...(first ? { events: this.#events.about('upload.clean', { ...upload, verdict }, now) } : {})
      })
    }
    // Handed on to the requarantine, which the runner runs at once under the same lease.
    return write({ status: 'requarantining', ...scanned, ...measured, runAt: now + this.#options.leaseMs })
  }

  /**
   * The verdict, the version of the object it was drawn from (null when nothing was read), and
   * what was read. `scanned` is called as soon as the scanner is needed no more.
   */
  async #scan(
    claim: Claim,
    signal: AbortSignal,
    log: Log,
    scanned: (answered: boolean) => Promise<void>
  ): Promise<{ verdict: Verdict; version: string | null; bytes: number; sha256: string | null; info: ObjectInfo | null }> {
    const upload = claim.upload
    const startedAt = Date.now()
    if (upload.size > this.#options.scannerMaxBytes) {
      await scanned(false)
      // Decided without the scanner (it may be down): the file is never sent.
      const reason = `larger than the scanner limit of ${this.#options.scannerMaxBytes} bytes`
      const verdict: Verdict = { result: 'unscannable', signature: null, reason, engine: notSent, signatureVersion: null }
      await this.#audit(upload.id, startedAt, { ...auditOf(verdict), endpoint: null, bytes: 0 })
      return { verdict, version: null, bytes: 0, sha256: null, info: null }
    }
    let result: ScanResult
    let info: ObjectInfo
    let version: string
    let expectedBytes = 0
    const meter = new StreamMeter()
    try {
      const got = await this.#objects.get(upload.location, upload.objectKey, signal)
      const body = got.body
      info = got.info
      version = info.version
      expectedBytes = info.size
      pipeline(body, meter, () => {})
      result = await this.#scanner.scan(meter, signal)
    } catch (err) {
      await this.#audit(upload.id, startedAt, { ...failedTry(String((err as Error).message ?? err)), endpoint: null, bytes: meter.bytes })
      throw err
    }
    // clamd has answered: its slot goes to the next scan while this job records and promotes.
    await scanned(true)
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
    return { verdict, version, bytes: meter.bytes, sha256: meter.sha256, info }
  }

  /** Every try ends here, with a verdict or an error: the audit row and the metrics. */
  async #audit(uploadId: string, startedAt: number, row: AuditRow): Promise<void> {
    const durationMs = Date.now() - startedAt
    this.#metrics.scanEnded(row.outcome, durationMs / 1000)
    await this.#scanHistory.recordScan({ uploadId, startedAt, durationMs, ...row })
  }
}
