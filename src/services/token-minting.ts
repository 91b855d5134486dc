/** What an application asks for when it mints an upload token (`POST /v1/upload-tokens`, `POST /demo/token`). */
export interface MintRequest {
  sub?: string
  maxSize?: number
  types?: string[]
  maxUploads?: number
  meta?: Record<string, unknown>
  ttlSeconds?: number
}

export interface MintedToken {
  token: string
  /** ISO 8601. */
  expiresAt: string
}

/** Mints upload tokens with the gateway's current signing key. */
export interface TokenMinter {
  mint(request: MintRequest): Promise<MintedToken>
}
