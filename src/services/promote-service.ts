import type { Log } from '../ports/log.ts'
import type { Metrics } from '../ports/metrics.ts'
import { ObjectChangedError, ObjectNotFoundError, type ObjectStore } from '../ports/object-store.ts'
import type { Claim, StateStore } from '../ports/state-store.ts'
import type { EventOutbox } from './events.ts'
import { verdictTags } from './object-tags.ts'
import type { RescanPolicy } from './rescan-policy.ts'
import { transition } from './transition.ts'

/**
 * Moves an upload whose verdict is clean into production. The order makes every crash
 * repairable by running it again: copy (overwrites), delete from quarantine, then mark clean.
 * The state never says clean before the production copy exists.
 */
export class PromoteService {
  readonly #objects: ObjectStore
  readonly #state: StateStore
  readonly #metrics: Metrics
  readonly #rescans: RescanPolicy
  readonly #events: EventOutbox

  constructor(deps: { objects: ObjectStore; state: StateStore; metrics: Metrics; rescans: RescanPolicy; events: EventOutbox }) {
    this.#rescans = deps.rescans
    this.#events = deps.events
    this.#objects = deps.objects
    this.#state = deps.state
    this.#metrics = deps.metrics
  }

  async promote(claim: Claim, log: Log): Promise<void> {
    try {
      await this.#promote(claim, log)
    } catch (err) {
      this.#metrics.promotionEnded('error')
      throw err
    }
  }

  async #promote(claim: Claim, log: Log): Promise<void> {
    const upload = claim.upload
    // An operator's release, on the record, is the only way past a verdict that is not clean.
    if (upload.status !== 'promoting' || (upload.verdict?.result !== 'clean' && !upload.released)) {
      throw new Error(`upload ${upload.id} has no clean verdict: refusing to promote it`)
    }
    const tags = { ...verdictTags('clean', upload.id, upload.verdict, upload.scannedAt ?? Date.now()), ...(upload.released ? { 'av-released-by': upload.released.by } : {}) }
    if (upload.location === 'production') {
      // Released in place: tagged where it is (tag mode, or an adopted object that failed its scans).
      await this.#objects.setTags('production', upload.objectKey, tags)
      return this.#promoted(claim, log)
    }
    try {
      // Only the bytes that were scanned: if the quarantined object changed since, nothing is copied.
      await this.#objects.copy('quarantine', 'production', upload.objectKey, tags, upload.scannedVersion ? { ifVersion: upload.scannedVersion } : {})
    } catch (err) {
      if (err instanceof ObjectChangedError) return this.#changed(claim, log)
      // A run that crashed after deleting the quarantined copy left only the production one.
      if (!(err instanceof ObjectNotFoundError) || !(await this.#inProduction(upload.objectKey, upload.id, upload.size))) throw err
    }
    await this.#objects.delete('quarantine', upload.objectKey)
    await this.#promoted(claim, log)
  }

  async #promoted(claim: Claim, log: Log): Promise<void> {
    const upload = claim.upload
    const now = Date.now()
    const events = upload.released
      ? this.#events.about('upload.released', upload, now, { released: upload.released })
      : this.#events.about('upload.clean', upload, now)
    const change = { status: 'clean', lastError: null, location: 'production', nextScanAt: this.#rescans.next(upload, upload.scannedAt ?? now), events } as const
    if (await transition(this.#state, claim, change, now)) {
      this.#metrics.promotionEnded('promoted')
      log.info({ key: upload.objectKey }, 'upload clean, promoted')
    } else {
      log.warn({}, 'lease lost during promotion; the new owner finishes it')
    }
  }

  /** The quarantined bytes are not the ones scanned: never promoted, the upload fails for good. */
  async #changed(claim: Claim, log: Log): Promise<void> {
    const { upload } = claim
    const now = Date.now()
    log.error({}, 'the quarantined object changed after its scan: not promoted')
    this.#metrics.promotionEnded('changed')
    await this.#objects.setTags('quarantine', upload.objectKey, verdictTags('failed', upload.id, upload.verdict, now))
    const lastError = 'the quarantined object changed after it was scanned'
    await transition(this.#state, claim, { status: 'failed', lastError, events: this.#events.about('upload.failed', upload, now, { error: lastError }) }, now)
  }

  /** The production copy is ours when it carries our upload id (set by the copy itself) and the right size. */
  async #inProduction(key: string, uploadId: string, size: number): Promise<boolean> {
    const info = await this.#objects.head('production', key)
    if (info === null || info.size !== size) return false
    return (await this.#objects.getTags('production', key))['av-upload-id'] === uploadId
  }
}
