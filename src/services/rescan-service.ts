import { randomUUID } from 'node:crypto'
import { GatewayError } from '../domain/errors.ts'
import type { AuditLog } from '../ports/history-store.ts'
import type { ObjectStore } from '../ports/object-store.ts'
import type { RescanSelection, RescanStore } from '../ports/rescan-store.ts'
import { rescanView, type RescanView } from './rescan-view.ts'

/** A rescan scope as operators send it (checked by the HTTP schema before it gets here). */
export type RescanScope =
  | { all: true }
  | { prefix: string }
  | { uploadedBefore?: string; uploadedAfter?: string }
  | { ids: string[] }
  | { signatureVersionBelow: number }
  | { adopt: { bucket?: string; prefix?: string } }

/**
 * Rescans of a scope, and adoptions of the objects already in the production bucket: started,
 * followed and cancelled by operators. Starting and cancelling are audited with the actor (a key
 * id, never the key).
 */
export class RescanService {
  readonly #rescanStore: RescanStore
  readonly #audit: AuditLog
  readonly #objects: ObjectStore
  readonly #intervalMs: number

  constructor(deps: { rescanStore: RescanStore; audit: AuditLog; objects: ObjectStore }, options: { intervalMs: number }) {
    this.#rescanStore = deps.rescanStore
    this.#audit = deps.audit
    this.#objects = deps.objects
    this.#intervalMs = options.intervalMs
  }

  async start(scope: RescanScope, actor: string): Promise<RescanView> {
    const selection = this.#selection(scope)
    const now = Date.now()
    const rescan = await this.#rescanStore.createRescan({ id: randomUUID(), scope: scope as Record<string, unknown>, createdBy: actor, createdAt: now }, selection)
    await this.#record(actor, 'rescan.start', rescan.id, { scope, total: rescan.total })
    return rescanView(rescan)
  }

  /** Null when there is no such rescan. */
  async get(id: string): Promise<RescanView | null> {
    const rescan = await this.#rescanStore.getRescan(id)
    return rescan ? rescanView(rescan) : null
  }

  /** Newest first. */
  async list(limit: number): Promise<RescanView[]> {
    return (await this.#rescanStore.listRescans(limit)).map((r) => rescanView(r))
  }

  async cancel(id: string, actor: string): Promise<RescanView> {
    const rescan = await this.#rescanStore.getRescan(id)
    if (!rescan) throw new GatewayError('GW_NOT_FOUND', `no rescan ${id}`)
    if (!(await this.#rescanStore.cancelRescan(id, Date.now(), this.#intervalMs))) throw new GatewayError('GW_CONFLICT', `rescan ${id} is ${rescan.state}: nothing to cancel`)
    await this.#record(actor, 'rescan.cancel', id, { done: rescan.done, total: rescan.total })
    return rescanView((await this.#rescanStore.getRescan(id)) ?? rescan)
  }

  #record(actor: string, action: string, target: string, detail: Record<string, unknown>): Promise<void> {
    return this.#audit.recordAudit({ at: Date.now(), actor, action, target, detail })
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
