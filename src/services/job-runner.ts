import type { Log } from '../ports/log.ts'
import type { ObjectInfo, ObjectStore } from '../ports/object-store.ts'
import type { Claim, JobQueue } from '../ports/job-queue.ts'
import { handedOn, jobKindOf, noSlotToLeave, type JobKind, type JobStep } from './job-kind.ts'
import { FencedWrites, LeaseLostError, type LeaseClock } from './lease-fence.ts'
import { detectionTags } from './object-tags.ts'
import type { RescanPolicy } from './rescan-policy.ts'
import { decideRetry, errorFacts, type RetryOptions } from './retry-policy.ts'
import { transition } from './transition.ts'
import type { UploadEvents } from './upload-events.ts'

export type RunOutcome = 'done' | 'scanner-unavailable'

export interface JobRunnerOptions extends RetryOptions {
  /** Lease length, to re-check ownership before tagging a failed upload. */
  leaseMs: number
}

/**
 * Runs one claimed job to its next state: the step of its kind (job-kind.ts), then, when that
 * step handed the job on (a clean scan: promoting), the next step under the same lease. A step
 * that throws is retried or given up as the retry policy decides; the side effects of that
 * decision (the failed tag, withdrawing a promotion's copy) are done here, fenced by the claim.
 */
export class JobRunner {
  readonly #jobs: JobQueue
  readonly #steps: Record<JobKind, JobStep>
  readonly #rescans: RescanPolicy
  readonly #events: UploadEvents
  readonly #options: JobRunnerOptions
  /** The failed tag makes sure of the lease first. */
  readonly #writes: FencedWrites

  constructor(
    deps: { jobs: JobQueue; objects: ObjectStore; steps: Record<JobKind, JobStep>; rescans: RescanPolicy; events: UploadEvents; leases?: LeaseClock },
    options: JobRunnerOptions
  ) {
    this.#jobs = deps.jobs
    this.#steps = deps.steps
    this.#rescans = deps.rescans
    this.#events = deps.events
    this.#options = options
    this.#writes = new FencedWrites(deps.jobs, deps.objects, options.leaseMs, deps.leases)
  }

  /**
   * Runs the claimed job one step further. `log` is already bound to the upload. Resolves
   * 'scanner-unavailable' when clamd could not be reached, so the worker can hold back.
   * `scanned` is called once, when the job needs the scanner no more (see StepContext.scanned):
   * by the scan step when clamd has answered, or before a step that never scans.
   */
  async run(claim: Claim, signal: AbortSignal, log: Log, scanned: (answered: boolean) => Promise<void> = noSlotToLeave): Promise<RunOutcome> {
    let leftScan: Promise<void> | null = null
    const leaveScan = (answered: boolean): Promise<void> => (leftScan ??= scanned(answered))
    // The claim as the store now holds it: after a clean verdict it is promoting, and a failure
    // from then on must retry the promotion, never send the upload back to be scanned.
    let current = claim
    let source: ObjectInfo | undefined
    try {
      for (;;) {
        const kind = jobKindOf(current)
        if (kind !== 'scan' && kind !== 'rescan') await leaveScan(false)
        const result = await this.#steps[kind].run(current, signal, log, { scanned: leaveScan, ...(source ? { source } : {}) })
        if (!result.written) return lost(log)
        const next = handedOn(current, result.change, Date.now())
        if (next === null) return 'done'
        current = next
        source = result.source
      }
    } catch (err) {
      if (signal.aborted) throw err
      if (err instanceof LeaseLostError) return lost(log)
      return this.#retryOrFail(current, err, log, signal)
    }
  }

  async #retryOrFail(claim: Claim, err: unknown, log: Log, signal: AbortSignal): Promise<RunOutcome> {
    const upload = claim.upload
    const kind = jobKindOf(claim)
    const error = errorFacts(err)
    const now = Date.now()
    const facts = { kind, status: upload.status, location: upload.location, attempts: upload.attempts, failedRounds: upload.failedRounds, error, now, random: Math.random(), nextRescanAt: this.#rescans.next(now) }
    const first = decideRetry(facts, this.#options)
    const decision = first.action === 'write' ? first : decideRetry({ ...facts, withdrawn: await this.#withdrawn(kind, claim, log, signal) }, this.#options)
    if (decision.log) log[decision.log.level]({ err, ...decision.log.fields }, decision.log.msg)
    let change = decision.change
    if (decision.failed) {
      try {
        await this.#writes.setTags(claim, upload.location, upload.objectKey, detectionTags('failed', upload.id, upload.verdict, now, upload.location === 'production'), { signal })
      } catch (tagErr) {
        if (tagErr instanceof LeaseLostError) return lost(log)
        log.error({ err: tagErr }, 'could not tag a failed upload')
      }
      change = { ...change, events: this.#events.about('upload.failed', upload, now, { error: error.message }) }
    }
    if (!(await transition(this.#jobs, claim, change, now))) lost(log)
    return error.outage ? 'scanner-unavailable' : 'done'
  }

  /** Whether a given-up job left nothing behind (a promotion's production copy, see PromoteStep.withdraw). */
  async #withdrawn(kind: JobKind, claim: Claim, log: Log, signal: AbortSignal): Promise<boolean> {
    const step = this.#steps[kind]
    if (!step.withdraw) return true
    try {
      return await step.withdraw(claim, signal)
    } catch (err) {
      if (err instanceof LeaseLostError) throw err
      log.error({ err }, 'could not withdraw the production copy of a failed promotion')
      return false
    }
  }
}

function lost(log: Log): RunOutcome {
  log.warn({}, 'lease lost: another worker owns this upload now, result dropped')
  return 'done'
}
