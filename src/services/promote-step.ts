import { isActiveType } from '../domain/media-types.ts'
import type { Log } from '../ports/log.ts'
import type { Metrics } from '../ports/metrics.ts'
import { ObjectChangedError, ObjectNotFoundError, type ObjectInfo, type ObjectStore } from '../ports/object-store.ts'
import type { Claim, JobQueue } from '../ports/job-queue.ts'
import type { JobStep, StepContext, StepResult } from './job-kind.ts'
import { FencedWrites, type LeaseClock } from './lease-fence.ts'
import { verdictTags } from './object-tags.ts'
import type { RescanPolicy } from './rescan-policy.ts'
import { transition } from './transition.ts'
import type { UploadEvents } from './upload-events.ts'

/**
 * Moves an upload whose verdict is clean into production. The order makes every crash
 * repairable by running it again: copy (overwrites), delete from quarantine, then mark clean.
 * The state never says clean before the production copy exists.
 */
export class PromoteStep implements JobStep {
  readonly #objects: ObjectStore
  readonly #jobs: JobQueue
  readonly #metrics: Metrics
  readonly #rescans: RescanPolicy
  readonly #events: UploadEvents
  /** Every object-store write makes sure of the lease first. */
  readonly #writes: FencedWrites

  constructor(deps: { objects: ObjectStore; jobs: JobQueue; metrics: Metrics; rescans: RescanPolicy; events: UploadEvents; leases?: LeaseClock }, options: { leaseMs: number }) {
    this.#rescans = deps.rescans
    this.#events = deps.events
    this.#objects = deps.objects
    this.#jobs = deps.jobs
    this.#metrics = deps.metrics
    this.#writes = new FencedWrites(deps.jobs, deps.objects, options.leaseMs, deps.leases)
  }

  async run(claim: Claim, signal: AbortSignal, log: Log, context?: StepContext): Promise<StepResult> {
    try {
      return await this.#promote(claim, log, signal, context?.source)
    } catch (err) {
      this.#metrics.promotionEnded('error')
      throw err
    }
  }

  /**
   * A promotion that is given up must leave nothing in production: a failed upload is never
   * readable there. Removes the production copy while the quarantined one still exists; false when
   * the production copy is the only one left (a run deleted the quarantined copy and could not
   * record it): then the promotion must go on being retried, never be marked failed.
   */
  async withdraw(claim: Claim, signal?: AbortSignal): Promise<boolean> {
    const { upload } = claim
    if (upload.location !== 'quarantine') return true
    if ((await this.#objects.head('quarantine', upload.objectKey)) === null) return (await this.#objects.head('production', upload.objectKey)) === null
    await this.#writes.delete(claim, 'production', upload.objectKey, { signal })
    return true
  }

  /** `read`: the quarantined object as the scan of this run read it, if it did. */
  async #promote(claim: Claim, log: Log, signal?: AbortSignal, read?: ObjectInfo): Promise<StepResult> {
    const upload = claim.upload
    // An operator's release, on the record, is the only way past a verdict that is not clean.
    if (upload.status !== 'promoting' || (upload.verdict?.result !== 'clean' && !upload.released)) {
      throw new Error(`upload ${upload.id} has no clean verdict: refusing to promote it`)
    }
    const tags = { ...verdictTags('clean', upload.id, upload.verdict, upload.scannedAt ?? Date.now()), ...(upload.released ? { 'av-released-by': upload.released.by } : {}) }
    if (upload.location === 'production') {
      // Released in place: tagged where it is (tag mode, or an adopted object that failed its scans).
      await this.#writes.setTags(claim, 'production', upload.objectKey, tags, { signal })
      return this.#promoted(claim, log)
    }
    try {
      // Only the bytes that were scanned (or, for a release, verified): if the quarantined object changed since, nothing is copied.
      // As the detected type; active content (HTML, SVG, XML, scripts) only as a download, never rendered inline.
      const type = { contentType: upload.contentType, ...(isActiveType(upload.contentType) ? { contentDisposition: 'attachment' } : {}) }
      // What the scan read of the very version it scanned stands for the source: no HEAD before the copy.
      const source = read && upload.scannedVersion && read.version === upload.scannedVersion ? { source: read } : {}
      await this.#writes.copy(claim, 'quarantine', 'production', upload.objectKey, tags, { ...(upload.scannedVersion ? { ifVersion: upload.scannedVersion } : {}), ...type, ...source, signal })
    } catch (err) {
      if (err instanceof ObjectChangedError) return this.#changed(claim, log, signal)
      // A run that crashed after deleting the quarantined copy left only the production one.
      if (!(err instanceof ObjectNotFoundError) || !(await this.#inProduction(upload.objectKey, upload.id, upload.size))) throw err
    }
    await this.#writes.delete(claim, 'quarantine', upload.objectKey, { signal })
    return this.#promoted(claim, log)
  }

  async #promoted(claim: Claim, log: Log): Promise<StepResult> {
    const upload = claim.upload
    const now = Date.now()
    const events = upload.released
      ? this.#events.about('upload.released', upload, now, { released: upload.released })
      : this.#events.about('upload.clean', upload, now)
    const change = { status: 'clean', lastError: null, location: 'production', nextScanAt: this.#rescans.next(upload.scannedAt ?? now), events } as const
    const written = await transition(this.#jobs, claim, change, now)
    if (written) {
      this.#metrics.promotionEnded('promoted')
      log.info({ key: upload.objectKey }, 'upload clean, promoted')
    }
    return { change, written }
  }

  /** The quarantined bytes are not the ones scanned: never promoted, the upload fails for good. */
  async #changed(claim: Claim, log: Log, signal?: AbortSignal): Promise<StepResult> {
    const { upload } = claim
    const now = Date.now()
    log.error({}, 'the quarantined object changed after its scan: not promoted')
    // An earlier try may have copied the scanned bytes before failing: a failed upload has no production copy.
    await this.withdraw(claim, signal)
    this.#metrics.promotionEnded('changed')
    await this.#writes.setTags(claim, 'quarantine', upload.objectKey, verdictTags('failed', upload.id, upload.verdict, now), { signal })
    const lastError = 'the quarantined object changed after it was scanned'
    const change = { status: 'failed', lastError, events: this.#events.about('upload.failed', upload, now, { error: lastError }) } as const
    return { change, written: await transition(this.#jobs, claim, change, now) }
  }

  /** The production copy is ours when it carries our upload id (set by the copy itself) and the right size. */
  async #inProduction(key: string, uploadId: string, size: number): Promise<boolean> {
    const info = await this.#objects.head('production', key)
    if (info === null || info.size !== size) return false
    return (await this.#objects.getTags('production', key))['av-upload-id'] === uploadId
  }
}
