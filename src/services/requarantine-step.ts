import type { Log } from '../ports/log.ts'
import { ObjectNotFoundError, type ObjectStore } from '../ports/object-store.ts'
import type { Claim, JobQueue } from '../ports/job-queue.ts'
import type { JobStep, StepResult } from './job-kind.ts'
import { FencedWrites, type LeaseClock } from './lease-fence.ts'
import { detectionTags } from './object-tags.ts'
import { transition } from './transition.ts'
import type { UploadEvents } from './upload-events.ts'

/** move: copy back to quarantine and delete from production. tag: leave it, tagged, for a bucket policy that denies reads. */
export type RequarantineMode = 'move' | 'tag'

/**
 * Takes an object that a scan found infected or unscannable out of production. Like promotion,
 * in an order that a re-run repairs: copy to quarantine (overwrites), delete from production,
 * then record the verdict. A later clean scan never puts it back: only a release does.
 */
export class RequarantineStep implements JobStep {
  readonly #objects: ObjectStore
  readonly #jobs: JobQueue
  readonly #mode: RequarantineMode
  readonly #events: UploadEvents
  /** Every object-store write renews the lease first. */
  readonly #writes: FencedWrites

  constructor(deps: { objects: ObjectStore; jobs: JobQueue; events: UploadEvents; leases?: LeaseClock }, options: { mode: RequarantineMode; leaseMs: number }) {
    this.#writes = new FencedWrites(deps.jobs, deps.objects, options.leaseMs, deps.leases)
    this.#events = deps.events
    this.#objects = deps.objects
    this.#jobs = deps.jobs
    this.#mode = options.mode
  }

  async run(claim: Claim, signal: AbortSignal, log: Log): Promise<StepResult> {
    const upload = claim.upload
    const verdict = upload.verdict
    if (upload.status !== 'requarantining' || !verdict || verdict.result === 'clean' || verdict.result === 'rejected') {
      throw new Error(`upload ${upload.id} has no detection: refusing to requarantine it`)
    }
    const now = Date.now()
    // In tag mode a bucket policy denies reads of av-status=infected: anything detected or not
    // fully scanned carries that status there; av-reason says why an unscannable one is blocked.
    const tags = detectionTags(verdict.result, upload.id, verdict, now, this.#mode === 'tag')
    let scannedVersion = upload.scannedVersion
    if (this.#mode === 'move') {
      try {
        await this.#writes.copy(claim, 'production', 'quarantine', upload.objectKey, tags, { signal })
      } catch (err) {
        // A run that crashed after deleting from production left only the quarantine copy.
        if (!(err instanceof ObjectNotFoundError) || (await this.#objects.head('quarantine', upload.objectKey)) === null) throw err
      }
      await this.#writes.delete(claim, 'production', upload.objectKey, { signal })
      // The copy is a new version: a later release promotes exactly these bytes.
      scannedVersion = (await this.#objects.head('quarantine', upload.objectKey))?.version ?? null
    } else {
      await this.#writes.setTags(claim, 'production', upload.objectKey, tags, { signal })
    }
    const location = this.#mode === 'move' ? 'quarantine' : 'production'
    const events = [...this.#events.about('object.requarantined', upload, now, { mode: this.#mode }), ...this.#events.about(`upload.${verdict.result}`, upload, now)]
    // A released upload taken out again is no longer released: only a new release puts it back.
    const change = { status: verdict.result, location, scannedVersion, nextScanAt: null, lastError: null, resetAttempts: true, rescanOutcome: verdict.result, events, clearRelease: true } as const
    const written = await transition(this.#jobs, claim, change, now)
    if (written) log.warn({ verdict, mode: this.#mode }, 'stored object found ' + verdict.result + ': taken out of production')
    return { change, written }
  }
}
