import type { Log } from '../ports/log.ts'
import type { ObjectStore } from '../ports/object-store.ts'
import type { OrphanLedger } from '../ports/upload-intake.ts'
import type { UploadIntent } from '../ports/upload-intake.ts'
import { BackgroundLoop } from './background-loop.ts'

export interface OrphanSweeperOptions {
  /** What no committed record names after this long is an orphan (an upload in flight is younger). */
  orphanAfterMs: number
  /** Idempotency keys are kept this long. */
  idempotencyTtlMs: number
  keyPrefix: string
  pageSize: number
  pollIntervalMs: number
  /** A sweep of an intent that failed (the store is down) is tried again this long after. */
  retryMs: number
  /**
   * Helper objects written beside an upload's object under `<key><suffix>` (tus: `.info`, `.part`):
   * known while their upload is, removed with its intent.
   */
  companionSuffixes?: readonly string[]
}

/**
 * Removes from quarantine what no committed record names: the object and open writes of every
 * upload intent that was abandoned (refused, or its cleanup failed) or never committed (its
 * gateway was killed), open writes and objects older than orphanAfterMs that neither a record nor
 * an intent names, and expired idempotency keys. Everything is paged: memory is one page.
 * A commit and the sweep of its intent exclude each other in the state store, so an object whose
 * record is committed is never removed.
 */
export class OrphanSweeper extends BackgroundLoop {
  readonly #orphans: OrphanLedger
  readonly #objects: ObjectStore
  readonly #options: OrphanSweeperOptions
  #openToken: string | null = null
  #objectToken: string | null = null
  /** A full listing of quarantine costs one request per page: one pass per orphanAfterMs is enough. */
  #objectPassDueAt = 0

  constructor(deps: { orphans: OrphanLedger; objects: ObjectStore; log: Log }, options: OrphanSweeperOptions) {
    super(deps.log, options.pollIntervalMs, 'orphan sweep failed')
    this.#orphans = deps.orphans
    this.#objects = deps.objects
    this.#options = options
  }

  async runOnce(): Promise<boolean> {
    const now = Date.now()
    const cutoff = now - this.#options.orphanAfterMs
    const { pageSize } = this.#options
    const intents = await this.#orphans.claimIntents(now, cutoff, now + this.#options.retryMs, pageSize)
    for (const intent of intents) {
      if (this.stopping) return false
      await this.#sweepIntent(intent)
    }
    const moreOpen = await this.#sweepOpenUploads(cutoff)
    const moreObjects = now >= this.#objectPassDueAt ? await this.#sweepObjects(cutoff) : false
    const expired = await this.#orphans.expireIdempotencyKeys(now - this.#options.idempotencyTtlMs, pageSize)
    return intents.length === pageSize || moreOpen || moreObjects || expired === pageSize
  }

  /** Open writes first, then the object: a write completed after the delete would be an orphan again. */
  async #sweepIntent(intent: UploadIntent): Promise<void> {
    try {
      let token: string | null = null
      for (let page = 0; page < 100; page++) {
        const open = await this.#objects.listOpenUploads('quarantine', intent.objectKey, token, this.#options.pageSize)
        for (const u of open.uploads) if (u.key === intent.objectKey) await this.#objects.abortOpenUpload('quarantine', u)
        token = open.nextToken
        if (token === null) break
      }
      await this.#objects.delete('quarantine', intent.objectKey)
      for (const suffix of this.#suffixes) await this.#objects.delete('quarantine', `${intent.objectKey}${suffix}`)
      await this.#orphans.deleteIntent(intent.id)
      this.log.info({ uploadId: intent.id, key: intent.objectKey }, 'orphan swept: an upload that was never committed')
    } catch (err) {
      // Claimed with a retry time: the next sweep after it tries again.
      this.log.warn({ err, uploadId: intent.id, key: intent.objectKey }, 'could not sweep an uncommitted upload; will retry')
    }
  }

  /** One page of open writes: those no record nor intent names, older than the cutoff, are aborted. */
  async #sweepOpenUploads(cutoff: number): Promise<boolean> {
    const page = await this.#objects.listOpenUploads('quarantine', this.#options.keyPrefix, this.#openToken, this.#options.pageSize)
    this.#openToken = page.nextToken
    const known = await this.#orphans.knownKeys([...new Set(page.uploads.map((u) => u.key))])
    for (const u of page.uploads) {
      if (known.has(u.key) || u.startedAt > cutoff) continue
      await this.#objects.abortOpenUpload('quarantine', u)
      this.log.info({ key: u.key }, 'orphan swept: an open upload no record names')
    }
    return page.nextToken !== null
  }

  get #suffixes(): readonly string[] {
    return this.#options.companionSuffixes ?? []
  }

  /** The key whose record or intent keeps this object: its own, or its upload's for a companion. */
  #ownerKey(key: string): string {
    const suffix = this.#suffixes.find((s) => key.endsWith(s))
    return suffix ? key.slice(0, -suffix.length) : key
  }

  /** One page of quarantine: objects no record nor intent names, written before the cutoff, are deleted. */
  async #sweepObjects(cutoff: number): Promise<boolean> {
    const page = await this.#objects.list('quarantine', this.#options.keyPrefix, this.#objectToken, this.#options.pageSize)
    this.#objectToken = page.nextToken
    if (page.nextToken === null) this.#objectPassDueAt = Date.now() + this.#options.orphanAfterMs
    const known = await this.#orphans.knownKeys([...new Set(page.objects.map((o) => this.#ownerKey(o.key)))])
    for (const o of page.objects) {
      if (known.has(this.#ownerKey(o.key)) || o.modifiedAt > cutoff) continue
      await this.#objects.delete('quarantine', o.key)
      this.log.info({ key: o.key }, 'orphan swept: an object no record names')
    }
    return page.nextToken !== null
  }
}
