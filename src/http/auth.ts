import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { GatewayError } from '../domain/errors.ts'
import type { Principal, TokenPrincipal } from '../domain/principal.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** Who made the request, set by the auth hook (anonymous before it ran, or on routes without one). */
    principal: Principal
  }
}

export type Role = 'upload' | 'admin'
/** What an upload route does with an upload token: see Auth.require. */
export type TokenUse = 'accept' | 'read' | 'refuse'

/** Checks upload tokens (UploadTokens). */
export interface TokenVerifier {
  verify(token: string, options: { forRead?: boolean }): Promise<TokenPrincipal>
}

/** A compact JWS: three base64url segments (the last one empty for `alg: none`, which is then refused as invalid). */
const jwtShape = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/

const digest = (key: string): Buffer => createHash('sha256').update(key).digest()

/**
 * Bearer-token checks. Keys are compared as SHA-256 digests in constant time, so neither
 * their length nor their content leaks through timing.
 */
export class Auth {
  readonly #upload: Buffer[]
  readonly #admin: Buffer[]
  readonly #tokens: TokenVerifier | null

  /** tokens: null when the gateway has no token secrets (a token is then refused as invalid). */
  constructor(uploadKeys: readonly string[], adminKeys: readonly string[], tokens: TokenVerifier | null = null) {
    this.#upload = uploadKeys.map(digest)
    this.#admin = adminKeys.map(digest)
    this.#tokens = tokens
  }

  /** True when anyone may upload: no upload keys configured (allowed on loopback only, checked by the config). */
  get anonymousUploads(): boolean {
    return this.#upload.length === 0
  }

  /** Who made an admin request, for the audit: the key's digest prefix, never the key. */
  actorOf(request: FastifyRequest): string {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '')
    return match?.[1] ? `admin-${digest(match[1]).toString('hex').slice(0, 12)}` : 'anonymous'
  }

  /** Whose keys these are (Idempotency-Key): the token's jti, the bearer key's digest prefix, or anonymous. */
  callerOf(request: FastifyRequest): string {
    if (request.principal?.kind === 'token') return `token-${request.principal.jti}`
    const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '')
    return match?.[1] ? `key-${digest(match[1]).toString('hex').slice(0, 16)}` : 'anonymous'
  }

  /**
   * An onRequest hook that lets the request through only with a key of the given role, or (upload
   * role) a valid upload token, and sets request.principal. It runs before the body is read and
   * before params, query and body are validated, so a caller without the right credential learns
   * nothing about what the route accepts. Tokens never open admin routes; `tokens` says what an
   * upload route does with one: accept it, accept it for reading (an expired token passes: the
   * route allows it only on its own uploads within GW_TOKEN_READ_TTL), or refuse it (403).
   */
  require(role: Role, { tokens = 'accept' }: { tokens?: TokenUse } = {}) {
    return async (request: FastifyRequest, _reply: FastifyReply): Promise<void> => {
      const bearer = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '')?.[1]
      const key = bearer === undefined ? null : digest(bearer)
      const has = (keys: Buffer[]): boolean => key !== null && keys.reduce((found, k) => timingSafeEqual(k, key) || found, false)
      const isAdmin = has(this.#admin)
      if (isAdmin || (role === 'upload' && has(this.#upload))) {
        request.principal = { kind: 'key', role: isAdmin ? 'admin' : 'upload', keyId: `key-${(key as Buffer).toString('hex').slice(0, 16)}` }
        return
      }
      // A JWT's shape; with tokens on, anything else with a dot is a malformed token, not a key.
      const token = bearer !== undefined && (jwtShape.test(bearer) || (this.#tokens !== null && role === 'upload' && bearer.includes('.'))) ? bearer : null
      if (token !== null) {
        if (role === 'admin' || tokens === 'refuse') throw new GatewayError('GW_FORBIDDEN', 'an upload token cannot do this: use a key')
        if (!this.#tokens) throw new GatewayError('GW_TOKEN_INVALID', 'this gateway accepts no upload tokens (GW_TOKEN_SECRETS is empty)')
        request.principal = await this.#tokens.verify(token, { forRead: tokens === 'read' })
        return
      }
      if (role === 'upload' && this.anonymousUploads) {
        request.principal = { kind: 'anonymous' }
        return
      }
      if (bearer === undefined) throw new GatewayError('GW_UNAUTHORIZED')
      throw new GatewayError('GW_FORBIDDEN', 'this key is not recognised for this action')
    }
  }
}
