import type { Rejection, Verdict } from '../ports/upload-record.ts'

/** Tags put on objects so bucket policies and people can see a verdict without the gateway. */
export function verdictTags(status: 'clean' | 'infected' | 'unscannable' | 'failed', uploadId: string, verdict: Verdict | Rejection | null, at: number): Record<string, string> {
  const tags: Record<string, string> = { 'av-status': status, 'av-upload-id': uploadId, 'av-scanned-at': new Date(at).toISOString() }
  if (verdict) {
    tags['av-engine'] = verdict.engine
    if (verdict.signatureVersion !== null) tags['av-signature-version'] = String(verdict.signatureVersion)
    if (verdict.signature) tags['av-signature'] = verdict.signature
    if (verdict.reason) tags['av-reason'] = verdict.reason
  }
  return tags
}

/**
 * Tags of a detection, or of an object that could not be verified: one left in production (tag
 * mode) carries av-status=infected whatever its status, which the bucket policy denies.
 */
export function detectionTags(status: 'infected' | 'unscannable' | 'failed', uploadId: string, verdict: Verdict | Rejection | null, at: number, inProduction: boolean): Record<string, string> {
  return { ...verdictTags(status, uploadId, verdict, at), ...(inProduction ? { 'av-status': 'infected' } : {}) }
}
