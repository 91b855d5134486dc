/**
 * Who makes a request: nobody (anonymous uploads on loopback), a static key, or an upload token
 * minted by the application's backend. The auth hook sets it on every authenticated request.
 */
export type Principal = AnonymousPrincipal | KeyPrincipal | TokenPrincipal

export interface AnonymousPrincipal {
  kind: 'anonymous'
}

export interface KeyPrincipal {
  kind: 'key'
  role: 'upload' | 'admin'
  /** The key's digest prefix (`key-…`), never the key. */
  keyId: string
}

/** A verified upload token's claims. */
export interface TokenPrincipal {
  kind: 'token'
  jti: string
  /** The end user, recorded with the upload and in webhooks. */
  sub: string | null
  /** Largest upload in bytes (never above GW_MAX_UPLOAD_BYTES), null: the global limit. */
  maxSize: number | null
  /** Allowed MIME types (within GW_ALLOWED_TYPES), null: what the gateway allows. */
  types: readonly string[] | null
  /** How many uploads this token may create (counted by jti in the state store). */
  maxUploads: number
  /** Returned in the status and in webhooks. */
  meta: Record<string, unknown> | null
  /** Epoch milliseconds. */
  expiresAt: number
}

/** Who an upload belongs to, recorded with it when a token created it. */
export interface UploadOwner {
  tokenId: string
  subject: string | null
  meta: Record<string, unknown> | null
}

/** A token's owner fields, for the upload it creates; null for keys and anonymous uploads. */
export function ownerOf(principal: Principal): UploadOwner | null {
  return principal.kind === 'token' ? { tokenId: principal.jti, subject: principal.sub, meta: principal.meta } : null
}
