import rateLimit from '@fastify/rate-limit'
import type { FastifyInstance } from 'fastify'
import { GatewayError } from '../domain/errors.ts'
import type { Principal } from '../domain/principal.ts'

export type RateLimitKind = 'tokens' | 'uploads' | 'status'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Which per-minute limit this route counts against (see rateLimited). */
    gwRateLimit?: RateLimitKind
  }
}

export interface RateLimitOptions {
  /** Requests per minute per caller, by kind; 0: no limit. */
  perMinute: Record<RateLimitKind, number>
  /** Callers counted at once (least recently seen are forgotten first). */
  cache?: number
}

/** A route's `config` fragment: the route counts against this kind's limit. */
export function rateLimited(kind: RateLimitKind): { gwRateLimit: RateLimitKind } {
  return { gwRateLimit: kind }
}

/**
 * Who a request is counted as: a token's end user (its `sub`, else the token itself), a key, or
 * the client's address when anonymous.
 */
export function rateLimitKey(principal: Principal | null, address: string): string {
  if (principal?.kind === 'token') return principal.sub !== null ? `sub:${principal.sub}` : `jti:${principal.jti}`
  if (principal?.kind === 'key') return principal.keyId
  return `addr:${address}`
}

/**
 * Per-minute limits with @fastify/rate-limit, counted in this process's memory: behind a load
 * balancer each replica counts on its own. They run as a preHandler hook, after the routes' auth
 * hooks (onRequest) have set request.principal. One store holds every kind, so two routes of one
 * kind (multipart and tus uploads) share their count. Register before the routes.
 */
export async function registerRateLimits(app: FastifyInstance, options: RateLimitOptions): Promise<void> {
  const kinds = (Object.keys(options.perMinute) as RateLimitKind[]).filter((kind) => options.perMinute[kind] > 0)
  if (kinds.length === 0) return
  await app.register(rateLimit, {
    global: false,
    cache: options.cache ?? 10_000,
    errorResponseBuilder: (_request, context) =>
      new GatewayError('GW_RATE_LIMITED', `too many requests: at most ${context.max} a minute; try again in ${context.after}`)
  })
  const limiters = new Map<RateLimitKind, ReturnType<FastifyInstance['rateLimit']>>()
  for (const kind of kinds) {
    limiters.set(
      kind,
      app.rateLimit({
        max: options.perMinute[kind],
        timeWindow: 60_000,
        keyGenerator: (request) => `${kind}|${rateLimitKey(request.principal, request.ip)}`
      })
    )
  }
  app.addHook('preHandler', async (request, reply) => {
    const kind = request.routeOptions.config.gwRateLimit
    const limiter = kind === undefined ? undefined : limiters.get(kind)
    if (limiter) await limiter.call(app, request, reply)
  })
}
