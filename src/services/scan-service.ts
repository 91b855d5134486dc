import { pipeline } from 'node:stream'
import type { Log } from '../ports/log.ts'
import { backoffMs } from '../domain/upload-state.ts'
import type { ObjectStore } from '../ports/object-store.ts'
import type { ScanResult, Scanner } from '../ports/scanner.ts'
import type { Claim, StateStore, StatusChange, Verdict } from '../ports/state-store.ts'
import { verdictTags } from './object-tags.ts'
import type { PromoteService } from './promote-service.ts'
import { StreamMeter } from './stream-meter.ts'
import { transition } from './transition.ts'

export interface ScanOptions {
  /** Files larger than this are not sent to the scanner: they are unscannable. */
  scannerMaxBytes: number
  maxAttempts: number
  retryBaseMs: number
  retryMaxMs: number
}

/** The content did not arrive whole: no verdict may be drawn from it. */
class IntegrityError extends Error {
  override name = 'IntegrityError'
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
  readonly #options: ScanOptions

  constructor(deps: { objects: ObjectStore; state: StateStore; scanner: Scanner; promote: PromoteService }, options: ScanOptions) {
    this.#objects = deps.objects
    this.#state = deps.state
    this.#scanner = deps.scanner
    this.#promote = deps.promote
    this.#options = options
  }

  /** `log` is already bound to the upload (its id is on every line). */
  async run(claim: Claim, signal: AbortSignal, log: Log): Promise<void> {
    try {
      if (claim.upload.status === 'promoting') {
        await this.#promote.promote(claim, log)
        return
      }
      const verdict = await this.#scan(claim, signal, log)
      if (verdict.result === 'clean') {
        const now = Date.now()
        const moved = await transition(this.#state, claim, { status: 'promoting', verdict, scannedAt: now, lastError: null, resetAttempts: true }, now)
        if (!moved) return this.#lost(claim, log)
        await this.#promote.promote({ ...claim, upload: { ...claim.upload, status: 'promoting', verdict, scannedAt: now } }, log)
        return
      }
      // Tag before the state says so: a crash in between re-runs the scan and tags again.
      const now = Date.now()
      await this.#objects.setTags('quarantine', claim.upload.objectKey, verdictTags(verdict.result, claim.upload.id, verdict, now))
      if (!(await transition(this.#state, claim, { status: verdict.result, verdict, scannedAt: now, lastError: null }, now))) this.#lost(claim, log)
      else log.warn({ verdict }, `upload ${verdict.result}`)
    } catch (err) {
      if (signal.aborted) throw err
      await this.#retryOrFail(claim, err, log)
    }
  }

  async #scan(claim: Claim, signal: AbortSignal, log: Log): Promise<Verdict> {
    const upload = claim.upload
    const startedAt = Date.now()
    if (upload.size > this.#options.scannerMaxBytes) {
      const engine = await this.#scanner.version()
      const reason = `larger than the scanner limit of ${this.#options.scannerMaxBytes} bytes`
      await this.#audit(upload.id, startedAt, null, { result: 'unscannable', reason }, engine.engine, engine.signatureVersion, 0)
      return { result: 'unscannable', signature: null, reason, engine: engine.engine, signatureVersion: engine.signatureVersion }
    }
    let result: ScanResult
    const meter = new StreamMeter()
    try {
      const { body } = await this.#objects.get('quarantine', upload.objectKey, signal)
      pipeline(body, meter, () => {})
      result = await this.#scanner.scan(meter, signal)
    } catch (err) {
      await this.#audit(upload.id, startedAt, null, null, null, null, meter.bytes, String((err as Error).message ?? err))
      throw err
    }
    const outcome = result.outcome
    // A clean verdict counts only for the whole file: every byte read, and the same bytes that were uploaded.
    if (outcome.result === 'clean' && (meter.bytes !== upload.size || meter.sha256 !== upload.sha256)) {
      const detail = `read ${meter.bytes} bytes with sha256 ${meter.sha256}, expected ${upload.size} bytes with sha256 ${upload.sha256}`
      await this.#audit(upload.id, startedAt, result.endpoint, null, result.engine.engine, result.engine.signatureVersion, meter.bytes, detail)
      throw new IntegrityError(`quarantined object does not match its upload: ${detail}`)
    }
    await this.#audit(upload.id, startedAt, result.endpoint, outcome, result.engine.engine, result.engine.signatureVersion, result.bytes)
    log.info({ outcome, endpoint: result.endpoint, ms: Date.now() - startedAt }, 'scanned')
    return {
      result: outcome.result,
      signature: outcome.result === 'infected' ? outcome.signature : null,
      reason: outcome.result === 'unscannable' ? outcome.reason : null,
      engine: result.engine.engine,
      signatureVersion: result.engine.signatureVersion
    }
  }

  async #audit(
    uploadId: string,
    startedAt: number,
    endpoint: string | null,
    outcome: ScanResult['outcome'] | null,
    engine: string | null,
    signatureVersion: number | null,
    bytes: number,
    error?: string
  ): Promise<void> {
    await this.#state.recordScan({
      uploadId,
      startedAt,
      durationMs: Date.now() - startedAt,
      endpoint,
      engine,
      signatureVersion,
      outcome: outcome ? outcome.result : 'error',
      signature: outcome?.result === 'infected' ? outcome.signature : null,
      detail: outcome?.result === 'unscannable' ? outcome.reason : (error ?? null),
      bytes
    })
  }

  /** Transient failure: try again later with backoff kept in the store, or give up as failed. */
  async #retryOrFail(claim: Claim, err: unknown, log: Log): Promise<void> {
    const upload = claim.upload
    const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err)
    const now = Date.now()
    let change: StatusChange
    if (upload.attempts >= this.#options.maxAttempts) {
      log.error({ err, attempts: upload.attempts }, `${upload.status === 'promoting' ? 'promotion' : 'scan'} failed for good`)
      await this.#objects
        .setTags('quarantine', upload.objectKey, verdictTags('failed', upload.id, upload.verdict, now))
        .catch((tagErr: unknown) => log.error({ err: tagErr }, 'could not tag a failed upload'))
      change = { status: 'failed', lastError: message }
    } else {
      const delay = backoffMs(upload.attempts, this.#options.retryBaseMs, this.#options.retryMaxMs)
      log.warn({ err, attempts: upload.attempts, retryInMs: delay }, 'transient error, will retry')
      // A clean verdict is kept: only the promotion is retried.
      change = upload.status === 'promoting' ? { status: 'promoting', lastError: message, runAt: now + delay } : { status: 'pending', lastError: message, runAt: now + delay }
    }
    if (!(await transition(this.#state, claim, change, now))) this.#lost(claim, log)
  }

  #lost(claim: Claim, log: Log): void {
    log.warn({}, 'lease lost: another worker owns this upload now, result dropped')
  }
}
