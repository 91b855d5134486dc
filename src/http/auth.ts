import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { GatewayError } from '../domain/errors.ts'
import type { Principal } from '../domain/principal.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** Who made the request, set by the auth hook (anonymous before it ran, or on routes without one). */
    principal: Principal
  }
}

export type Role = 'upload' | 'admin'

const digest = (key: string): Buffer => createHash('sha256').update(key).digest()

/**
 * Bearer-token checks. Keys are compared as SHA-256 digests in constant time, so neither
 * their length nor their content leaks through timing.
 */
export class Auth {
  readonly #upload: Buffer[]
  readonly #admin: Buffer[]

  constructor(uploadKeys: readonly string[], adminKeys: readonly string[]) {
    this.#upload = uploadKeys.map(digest)
    this.#admin = adminKeys.map(digest)
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

  /** Whose keys these are (Idempotency-Key): the bearer key's digest prefix, or anonymous. */
  callerOf(request: FastifyRequest): string {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '')
    return match?.[1] ? `key-${digest(match[1]).toString('hex').slice(0, 16)}` : 'anonymous'
  }

  /**
   * An onRequest hook that lets the request through only with a key of the given role. It runs
   * before the body is read and before params, query and body are validated, so a caller without
   * the right key learns nothing about what the route accepts.
   */
  require(role: Role) {
    return async (request: FastifyRequest, _reply: FastifyReply): Promise<void> => {
      if (role === 'upload' && this.anonymousUploads) {
        request.principal = { kind: 'anonymous' }
        return
      }
      const header = request.headers.authorization
      const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '')
      if (!match?.[1]) throw new GatewayError('GW_UNAUTHORIZED')
      const key = digest(match[1])
      const has = (keys: Buffer[]): boolean => keys.reduce((found, k) => timingSafeEqual(k, key) || found, false)
      const allowed = role === 'admin' ? has(this.#admin) : has(this.#upload) || has(this.#admin)
      if (!allowed) throw new GatewayError('GW_FORBIDDEN', 'this key is not recognised for this action')
      request.principal = { kind: 'key', role: has(this.#admin) ? 'admin' : 'upload', keyId: `key-${key.toString('hex').slice(0, 16)}` }
    }
  }
}
