import { randomUUID } from 'node:crypto'
import { pipeline } from 'node:stream/promises'
import { GatewayError } from '../domain/errors.ts'
import { releasableStatuses } from '../domain/upload-state.ts'
import { ObjectNotFoundError, type ObjectStore } from '../ports/object-store.ts'
import type { AuditEntry, ScanRecord } from '../ports/history-store.ts'
import type { RescanRecord, RescanSelection } from '../ports/rescan-store.ts'
import type { StateStore } from '../ports/state-store.ts'
import type { ReleasableStatus, UploadRecord } from '../ports/upload-record.ts'
import { StreamMeter } from './stream-meter.ts'

/** A rescan scope as operators send it (checked by the HTTP schema before it gets here). */
export type RescanScope =
  | { all: true }
  | { prefix: string }
  | { uploadedBefore?: string; uploadedAfter?: string }
  | { ids: string[] }
  | { signatureVersionBelow: number }
  | { adopt: { bucket?: string; prefix?: string } }

/**
 * The operator's controls: rescans of a scope, adoption of objects already in the production
 * bucket, single rescans, releases of false positives, scan history and the audit trail.
 * Every admin action is audited with its actor (a key id, never the key).
 */
export class RescanService {
  readonly #state: StateStore
  readonly #objects: ObjectStore
  readonly #intervalMs: number

  constructor(deps: { state: StateStore; objects: ObjectStore }, options: { intervalMs: number }) {
    this.#state = deps.state
    this.#objects = deps.objects
    this.#intervalMs = options.intervalMs
  }

  async start(scope: RescanScope, actor: string): Promise<RescanRecord> {
    const selection = this.#selection(scope)
    const now = Date.now()
    const rescan = await this.#state.createRescan({ id: randomUUID(), scope: scope as Record<string, unknown>, createdBy: actor, createdAt: now }, selection)
    await this.#audit(actor, 'rescan.start', rescan.id, { scope, total: rescan.total })
    return rescan
  }

  get(id: string): Promise<RescanRecord | null> {
    return this.#state.getRescan(id)
  }

  list(limit: number): Promise<RescanRecord[]> {
    return this.#state.listRescans(limit)
  }

  async cancel(id: string, actor: string): Promise<RescanRecord> {
    const rescan = await this.#state.getRescan(id)
    if (!rescan) throw new GatewayError('GW_NOT_FOUND', `no rescan ${id}`)
    if (!(await this.#state.cancelRescan(id, Date.now(), this.#intervalMs))) throw new GatewayError('GW_CONFLICT', `rescan ${id} is ${rescan.state}: nothing to cancel`)
    await this.#audit(actor, 'rescan.cancel', id, { done: rescan.done, total: rescan.total })
    return (await this.#state.getRescan(id)) as RescanRecord
  }

  async rescanOne(id: string, actor: string): Promise<void> {
    const upload = await this.#state.getUpload(id)
    if (!upload) throw new GatewayError('GW_NOT_FOUND', `no upload ${id}`)
    // A failed upload is scanned again from the start, with a fresh budget of tries.
    const scheduled = upload.status === 'failed' ? await this.#state.retryFailed(id, Date.now()) : await this.#state.scheduleRescan(id, Date.now())
    if (!scheduled) {
      throw new GatewayError('GW_CONFLICT', `upload ${id} is ${upload.status}: only clean, infected, unscannable or failed uploads that are not being scanned can be rescanned`)
    }
    await this.#audit(actor, 'upload.rescan', id, { status: upload.status })
  }

  /**
   * Releases a false positive. The stored bytes are read and hashed first, here: a release is a
   * rare, deliberate act, and an operator must learn at once that the bytes are not the upload's.
   * The promotion then copies exactly the version that was hashed (S3 CopySourceIfMatch on its ETag).
   */
  async release(id: string, reason: string, actor: string, signal?: AbortSignal): Promise<void> {
    const upload = await this.#state.getUpload(id)
    if (!upload) throw new GatewayError('GW_NOT_FOUND', `no upload ${id}`)
    const refused = (): GatewayError =>
      new GatewayError('GW_CONFLICT', `upload ${id} is ${upload.status}: only infected, unscannable or failed uploads that are not being worked on can be released`)
    if (!(releasableStatuses as readonly string[]).includes(upload.status)) throw refused()
    const from = upload.status as ReleasableStatus
    const version = await this.#verifiedVersion(upload, signal)
    const signature = from === 'infected' ? (upload.verdict?.signature ?? null) : null
    const released = await this.#state.requestRelease(id, { by: actor, reason, from, signature, version }, Date.now())
    if (!released) throw refused()
    await this.#audit(actor, 'upload.release', id, { reason, verdict: upload.verdict, status: upload.status })
  }

  /** The version of the stored object whose size and SHA-256 match the upload; refuses the release otherwise. */
  async #verifiedVersion(upload: UploadRecord, signal?: AbortSignal): Promise<string | null> {
    // An adopted object that was never read whole has no hash to compare with: it is released where it is.
    if (upload.sha256 === '') return null
    let opened
    try {
      opened = await this.#objects.get(upload.location, upload.objectKey, signal)
    } catch (err) {
      if (!(err instanceof ObjectNotFoundError)) throw err
      throw new GatewayError('GW_CONFLICT', `upload ${upload.id} cannot be released: its object ${upload.objectKey} is missing from ${upload.location}`)
    }
    const meter = new StreamMeter()
    await pipeline(opened.body, meter, async (source: AsyncIterable<Buffer>) => {
      for await (const _ of source);
    }, { signal })
    if (meter.bytes !== upload.size || meter.sha256 !== upload.sha256) {
      throw new GatewayError(
        'GW_CONFLICT',
        `upload ${upload.id} cannot be released: the object in ${upload.location} has ${meter.bytes} bytes with SHA-256 ${meter.sha256}, ` +
          `but ${upload.size} bytes with SHA-256 ${upload.sha256} were uploaded; these are not the uploaded bytes, so nothing is promoted (ask for the file to be uploaded again)`
      )
    }
    // In production (released in place) nothing is copied: the version pins only a promotion's copy.
    return upload.location === 'quarantine' ? opened.info.version : null
  }

  async scans(id: string): Promise<ScanRecord[]> {
    if (!(await this.#state.getUpload(id))) throw new GatewayError('GW_NOT_FOUND', `no upload ${id}`)
    return this.#state.listScans(id)
  }

  audit(limit: number, before?: number): Promise<AuditEntry[]> {
    return this.#state.listAudit(limit, before)
  }

  #audit(actor: string, action: string, target: string, detail: Record<string, unknown>): Promise<void> {
    return this.#state.recordAudit({ at: Date.now(), actor, action, target, detail })
  }

  #selection(scope: RescanScope): RescanSelection {
    const keys = Object.keys(scope)
    const dates = keys.every((k) => k === 'uploadedBefore' || k === 'uploadedAfter')
    if (keys.length !== 1 && !(dates && keys.length === 2)) {
      throw new GatewayError('GW_BAD_REQUEST', `give exactly one scope (all, prefix, uploadedBefore/uploadedAfter, ids, signatureVersionBelow or adopt), got: ${keys.join(', ') || 'none'}`)
    }
    if ('all' in scope) return { kind: 'all' }
    if ('prefix' in scope) return { kind: 'prefix', prefix: scope.prefix }
    if ('ids' in scope) return { kind: 'ids', ids: scope.ids }
    if ('signatureVersionBelow' in scope) return { kind: 'signatureVersionBelow', version: scope.signatureVersionBelow }
    if ('adopt' in scope) {
      const production = this.#objects.location('production', '').bucket
      const bucket = scope.adopt.bucket ?? production
      // The gateway serves one production bucket: it adopts what is already there.
      if (bucket !== production) throw new GatewayError('GW_BAD_REQUEST', `adoption covers the production bucket (${production}), not ${bucket}`)
      return { kind: 'adopt', bucket, prefix: scope.adopt.prefix ?? '' }
    }
    const before = date(scope.uploadedBefore, 'uploadedBefore')
    const after = date(scope.uploadedAfter, 'uploadedAfter')
    if (before === null && after === null) throw new GatewayError('GW_BAD_REQUEST', 'a date scope needs uploadedBefore, uploadedAfter or both')
    if (before !== null && after !== null && after >= before) throw new GatewayError('GW_BAD_REQUEST', 'uploadedAfter must be earlier than uploadedBefore')
    return { kind: 'uploaded', before, after }
  }
}

function date(value: string | undefined, name: string): number | null {
  if (value === undefined) return null
  const ms = Date.parse(value)
  if (!Number.isFinite(ms)) throw new GatewayError('GW_BAD_REQUEST', `${name} is not an ISO date: ${JSON.stringify(value)}`)
  return ms
}
