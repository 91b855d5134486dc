import Type, { type Static } from 'typebox'
import { GatewayError } from '../domain/errors.ts'
import type { AuditLog, ScanHistory } from '../ports/history-store.ts'
import type { UploadLookup } from '../ports/upload-record.ts'
import { iso } from './rescan-view.ts'

/** One scan try of an upload, as its clients and operators see it. */
export const ScanView = Type.Object(
  {
    startedAt: Type.String({ format: 'date-time' }),
    durationMs: Type.Integer(),
    outcome: Type.Union([Type.Literal('clean'), Type.Literal('infected'), Type.Literal('unscannable'), Type.Literal('error')]),
    signature: Type.Union([Type.String(), Type.Null()]),
    detail: Type.Union([Type.String(), Type.Null()], { description: 'Why unscannable, or the error of a try without a verdict.' }),
    engine: Type.Union([Type.String(), Type.Null()]),
    signatureVersion: Type.Union([Type.Integer(), Type.Null()]),
    endpoint: Type.Union([Type.String(), Type.Null()]),
    bytes: Type.Integer()
  },
  { $id: 'Scan' }
)
export type ScanView = Static<typeof ScanView>

/** One admin action, as operators see it. */
export const AuditView = Type.Object(
  {
    at: Type.String({ format: 'date-time' }),
    actor: Type.String({ description: 'The admin key: `admin-` and the first 12 hex digits of its SHA-256.' }),
    action: Type.String(),
    target: Type.String(),
    detail: Type.Record(Type.String(), Type.Unknown())
  },
  { $id: 'AuditEntry' }
)
export type AuditView = Static<typeof AuditView>

/** Reads what happened: the scans of an upload and the audit trail of admin actions. */
export class HistoryReader {
  readonly #uploads: UploadLookup
  readonly #scanHistory: ScanHistory
  readonly #audit: AuditLog

  constructor(deps: { uploads: UploadLookup; scanHistory: ScanHistory; audit: AuditLog }) {
    this.#uploads = deps.uploads
    this.#scanHistory = deps.scanHistory
    this.#audit = deps.audit
  }

  /** Every scan of an upload, oldest first. */
  async scans(uploadId: string): Promise<ScanView[]> {
    if (!(await this.#uploads.getUpload(uploadId))) throw new GatewayError('GW_NOT_FOUND', `no upload ${uploadId}`)
    return (await this.#scanHistory.listScans(uploadId)).map((s) => {
      const { durationMs, outcome, signature, detail, engine, signatureVersion, endpoint, bytes } = s
      return { startedAt: iso(s.startedAt) as string, durationMs, outcome, signature, detail, engine, signatureVersion, endpoint, bytes }
    })
  }

  /** Admin actions, newest first; `before` pages back (ms since the epoch). */
  async audit(limit: number, before?: number): Promise<AuditView[]> {
    return (await this.#audit.listAudit(limit, before)).map((a) => ({ ...a, at: iso(a.at) as string }))
  }
}
