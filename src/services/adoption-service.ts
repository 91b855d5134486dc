import { randomBytes } from 'node:crypto'
import type { Log } from '../ports/log.ts'
import type { ObjectStore } from '../ports/object-store.ts'
import type { AdoptionStore } from '../ports/rescan-store.ts'
import { BackgroundLoop } from './background-loop.ts'
import { newUploadId } from '../domain/upload-id.ts'

export interface AdoptionOptions {
  pageSize: number
  leaseMs: number
  pollIntervalMs: number
}

/**
 * Lists the production bucket for adoptions, one page at a time, and registers the objects the
 * gateway does not know so the scan worker scans them in place. The continuation token is saved
 * with each page in the same transaction, so a crash resumes where it stopped, and memory is one
 * page whatever the bucket holds.
 */
export class AdoptionService extends BackgroundLoop {
  readonly #adoption: AdoptionStore
  readonly #objects: ObjectStore
  readonly #options: AdoptionOptions
  readonly #owner = `adopt-${randomBytes(6).toString('hex')}`

  constructor(deps: { adoption: AdoptionStore; objects: ObjectStore; log: Log }, options: AdoptionOptions) {
    super(deps.log, options.pollIntervalMs, 'adoption listing failed; it resumes from its saved position')
    this.#adoption = deps.adoption
    this.#objects = deps.objects
    this.#options = options
  }

  /** Lists one adoption until it is done, its lease is lost or the service stops. False when none was due. */
  async runOnce(): Promise<boolean> {
    const { leaseMs, pageSize } = this.#options
    let claim = await this.#adoption.claimAdoption(this.#owner, leaseMs, Date.now())
    if (!claim) return false
    const log = this.log.child({ rescanId: claim.rescanId })
    log.info({ bucket: claim.bucket, prefix: claim.prefix, resumeAt: claim.continuationToken }, 'adoption listing')
    while (!this.stopping) {
      const page = await this.#objects.list('production', claim.prefix, claim.continuationToken, pageSize)
      const objects = page.objects.map((o) => ({ id: newUploadId(), key: o.key, size: o.size, contentType: 'application/octet-stream' }))
      const added = await this.#adoption.adoptPage(claim, objects, page.nextToken, leaseMs, Date.now())
      if (added === null) {
        log.warn({}, 'adoption lease lost; another worker goes on')
        return true
      }
      log.info({ listed: objects.length, added }, 'adoption page registered')
      if (page.nextToken === null) {
        log.info({}, 'adoption listing done')
        return true
      }
      claim = { ...claim, continuationToken: page.nextToken }
    }
    return true
  }
}
