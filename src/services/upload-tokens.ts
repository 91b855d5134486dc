import { randomUUID } from 'node:crypto'
import { errors as jose, jwtVerify, SignJWT, type JWTPayload } from 'jose'
import { GatewayError } from '../domain/errors.ts'
import { withinAllowed } from '../domain/media-types.ts'
import type { TokenPrincipal, UploadOwner } from '../domain/principal.ts'
import type { MintedToken, MintRequest, TokenMinter } from './token-minting.ts'

/** Clock skew allowed on `exp` (and on `iat`, `nbf`), in seconds. */
export const TOKEN_CLOCK_SKEW_S = 30
/** The longest a token may live (exp − iat), in seconds. */
export const MAX_TOKEN_LIFETIME_S = 3600
/** A minted token's lifetime when the request names none, in seconds. */
export const DEFAULT_TOKEN_TTL_S = 900
/** The largest `meta` object, as JSON in UTF-8. */
export const MAX_META_BYTES = 1024
/** The most uploads one token may create (a bound on the `max_uploads` claim). */
export const MAX_TOKEN_UPLOADS = 10_000

export interface UploadTokensOptions {
  /** `kid` and secret pairs (GW_TOKEN_SECRETS); the first one signs, all of them verify. */
  keys: readonly { kid: string; secret: string }[]
  /** The `aud` every token carries (GW_TOKEN_AUDIENCE). */
  audience: string
  /** GW_MAX_UPLOAD_BYTES: no token's `max_size` may exceed it. */
  maxUploadBytes: number
  /** GW_ALLOWED_TYPES (empty: any): a token's `types` must be within it. */
  allowedTypes: readonly string[]
}

/** The grants a token carries besides its identity and lifetime: the claims an application chooses. */
interface Grants {
  sub?: unknown
  max_size?: unknown
  types?: unknown
  max_uploads?: unknown
  meta?: unknown
}

const mimeType = /^([a-z0-9][a-z0-9!#$&^_.+-]{0,126}\/(\*|[a-z0-9][a-z0-9!#$&^_.+-]{0,126})|\*\/\*)$/

/**
 * Upload tokens: HS256 JWTs an application backend mints with a shared secret (or through the
 * gateway's own route) for one browser to upload with. Verification pins the algorithm, picks the
 * secret by the header's `kid`, and checks every claim: what a token grants never goes beyond the
 * gateway's own limits.
 */
export class UploadTokens implements TokenMinter {
  readonly #secrets: Map<string, Uint8Array>
  readonly #signing: { kid: string; key: Uint8Array }
  readonly #options: UploadTokensOptions

  constructor(options: UploadTokensOptions) {
    const [first] = options.keys
    if (!first) throw new Error('UploadTokens needs at least one kid:secret pair')
    this.#secrets = new Map(options.keys.map((k) => [k.kid, new TextEncoder().encode(k.secret)]))
    this.#signing = { kid: first.kid, key: this.#secrets.get(first.kid) as Uint8Array }
    this.#options = options
  }

  /** A token for what the request asks (400 GW_BAD_REQUEST when it asks for more than the gateway allows), signed with the first key. */
  async mint(request: MintRequest, now = Date.now()): Promise<MintedToken> {
    const ttl = request.ttlSeconds ?? DEFAULT_TOKEN_TTL_S
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TOKEN_LIFETIME_S) throw new GatewayError('GW_BAD_REQUEST', `ttlSeconds must be between 1 and ${MAX_TOKEN_LIFETIME_S}`)
    const grants: Grants = {
      ...(request.sub === undefined ? {} : { sub: request.sub }),
      ...(request.maxSize === undefined ? {} : { max_size: request.maxSize }),
      ...(request.types === undefined ? {} : { types: request.types }),
      ...(request.maxUploads === undefined ? {} : { max_uploads: request.maxUploads }),
      ...(request.meta === undefined ? {} : { meta: request.meta })
    }
    const problem = this.#grantProblem(grants, { minting: true })
    if (problem) throw new GatewayError('GW_BAD_REQUEST', problem)
    const iat = Math.floor(now / 1000)
    const token = await new SignJWT(grants as JWTPayload)
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid: this.#signing.kid })
      .setAudience(this.#options.audience)
      .setIssuedAt(iat)
      .setExpirationTime(iat + ttl)
      .setJti(randomUUID())
      .sign(this.#signing.key)
    return { token, expiresAt: new Date((iat + ttl) * 1000).toISOString() }
  }

  /**
   * The principal of a valid token; 401 GW_TOKEN_INVALID or GW_TOKEN_EXPIRED otherwise. forRead:
   * an expired token is still accepted (signature, audience and every other claim are checked):
   * the caller then allows it only on uploads it created within GW_TOKEN_READ_TTL (assertTokenMayRead).
   */
  async verify(token: string, options: { forRead?: boolean } = {}): Promise<TokenPrincipal> {
    const verifying = jwtVerify(token, (header) => this.#keyOf(header.kid), {
      algorithms: ['HS256'],
      audience: this.#options.audience,
      requiredClaims: ['exp', 'iat', 'jti'],
      clockTolerance: TOKEN_CLOCK_SKEW_S
    })
    const payload = await verifying.then((verified) => verified.payload, (err: unknown) => expiredPayload(err, options.forRead === true))
    return this.#principalOf(payload)
  }

  #keyOf(kid: unknown): Uint8Array {
    const key = typeof kid === 'string' ? this.#secrets.get(kid) : undefined
    if (!key) throw new GatewayError('GW_TOKEN_INVALID', 'the upload token is not valid: its kid names no key of this gateway')
    return key
  }

  #principalOf(claims: JWTPayload & Grants): TokenPrincipal {
    const { exp, iat, jti } = claims as { exp: number; iat: number; jti: unknown }
    const invalid = (why: string): GatewayError => new GatewayError('GW_TOKEN_INVALID', `the upload token is not valid: ${why}`)
    if (typeof jti !== 'string' || jti.length === 0 || jti.length > 128) throw invalid('jti must be a string of 1 to 128 characters')
    if (exp - iat > MAX_TOKEN_LIFETIME_S) throw invalid(`it lives longer than ${MAX_TOKEN_LIFETIME_S} seconds (exp − iat)`)
    if (iat > Date.now() / 1000 + TOKEN_CLOCK_SKEW_S) throw invalid('it was issued in the future (iat)')
    const problem = this.#grantProblem(claims, { minting: false })
    if (problem) throw invalid(problem)
    return {
      kind: 'token',
      jti,
      sub: (claims.sub as string | undefined) ?? null,
      maxSize: (claims.max_size as number | undefined) ?? null,
      types: (claims.types as string[] | undefined) ?? null,
      maxUploads: (claims.max_uploads as number | undefined) ?? 1,
      meta: (claims.meta as Record<string, unknown> | undefined) ?? null,
      expiresAt: exp * 1000
    }
  }

  /** What is wrong with the grants, named as the caller knows them (minting: the route's names), or null. */
  #grantProblem(g: Grants, { minting }: { minting: boolean }): string | null {
    const name = (claim: string, field: string): string => (minting ? field : claim)
    const { maxUploadBytes, allowedTypes } = this.#options
    if (g.sub !== undefined && (typeof g.sub !== 'string' || g.sub.length === 0 || g.sub.length > 256)) return 'sub must be a string of 1 to 256 characters'
    if (g.max_size !== undefined && !(Number.isSafeInteger(g.max_size) && (g.max_size as number) >= 1 && (g.max_size as number) <= maxUploadBytes)) {
      return `${name('max_size', 'maxSize')} must be a whole number of bytes from 1 to ${maxUploadBytes} (GW_MAX_UPLOAD_BYTES)`
    }
    if (g.types !== undefined) {
      if (!Array.isArray(g.types) || g.types.length === 0 || !g.types.every((t) => typeof t === 'string' && mimeType.test(t))) {
        return 'types must be a non-empty list of MIME types (lower case, such as image/png, image/* or */*)'
      }
      const outside = (g.types as string[]).filter((t) => !withinAllowed([t], allowedTypes))
      if (outside.length > 0) return `types outside GW_ALLOWED_TYPES: ${outside.join(', ')}`
    }
    if (g.max_uploads !== undefined && !(Number.isInteger(g.max_uploads) && (g.max_uploads as number) >= 1 && (g.max_uploads as number) <= MAX_TOKEN_UPLOADS)) {
      return `${name('max_uploads', 'maxUploads')} must be a whole number from 1 to ${MAX_TOKEN_UPLOADS}`
    }
    if (g.meta !== undefined) {
      if (g.meta === null || typeof g.meta !== 'object' || Array.isArray(g.meta)) return 'meta must be a JSON object'
      if (Buffer.byteLength(JSON.stringify(g.meta)) > MAX_META_BYTES) return `meta must be at most ${MAX_META_BYTES} bytes as JSON`
    }
    return null
  }
}

/** Why jose refused a token, as the gateway's error; for a read, an expired token's payload instead. */
function expiredPayload(err: unknown, forRead: boolean): JWTPayload {
  // jose checks exp last, after the signature and every other claim: the payload it carries is verified.
  if (err instanceof jose.JWTExpired && err.claim === 'exp') {
    if (forRead) return err.payload
    throw new GatewayError('GW_TOKEN_EXPIRED')
  }
  if (err instanceof GatewayError) throw err
  throw new GatewayError('GW_TOKEN_INVALID', `the upload token is not valid: ${err instanceof jose.JOSEError ? err.message : 'malformed'}`)
}

/**
 * A token may read only the uploads it created (403 GW_FORBIDDEN), and once expired only until
 * `readTtlMs` after the upload was created (401 GW_TOKEN_EXPIRED): a browser can follow its upload's
 * scan without asking its application for a new token.
 */
export function assertTokenMayRead(principal: TokenPrincipal, upload: { owner: UploadOwner | null; createdAt: number }, readTtlMs: number, now = Date.now()): void {
  if (upload.owner?.tokenId !== principal.jti) throw new GatewayError('GW_FORBIDDEN', 'this upload token did not create this upload')
  if (tokenExpired(principal, now) && now > upload.createdAt + readTtlMs) throw new GatewayError('GW_TOKEN_EXPIRED', 'the upload token has expired and this upload is past GW_TOKEN_READ_TTL')
}

/** Whether a token has expired, with the allowed clock skew. */
export function tokenExpired(principal: TokenPrincipal, now = Date.now()): boolean {
  return now > principal.expiresAt + TOKEN_CLOCK_SKEW_S * 1000
}
