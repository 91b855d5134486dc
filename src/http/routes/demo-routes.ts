import { isIP } from 'node:net'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import Type from 'typebox'
import { GatewayError } from '../../domain/errors.ts'
import type { TokenMinter } from '../../services/token-minting.ts'
import { rateLimited } from '../rate-limits.ts'
import { ErrorBody, headersTooSlow, MintedUploadToken } from '../schemas.ts'

/** A file of the demo page, as served. */
export interface DemoAsset {
  contentType: string
  body: string
}

export interface DemoDeps {
  /** The page itself (index.html) and its assets by name: demo.js, demo.css, uppy.min.js, uppy.min.css. */
  page: string
  assets: ReadonlyMap<string, DemoAsset>
  minter: TokenMinter
}

/** What a demo token allows: one upload, by the demo's own subject, for ten minutes. */
const demoGrant = { sub: 'demo', maxUploads: 1, ttlSeconds: 600 }

/**
 * Uppy's Dashboard sets style attributes and shows thumbnails as blob: and data: URLs; everything
 * else comes from this gateway.
 */
const pagePolicy = [
  "default-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data: blob:",
  "object-src 'none'",
  "base-uri 'none'",
  "frame-ancestors 'none'"
].join('; ')

const demoOnly = 'Only with GW_DEMO=true, which the gateway allows on a loopback address only.'

/** GET /demo, its assets, and POST /demo/token: registered only in demo mode (GW_DEMO=true). */
export const demoRoutes: FastifyPluginAsyncTypebox<DemoDeps> = async (app, { page, assets, minter }) => {
  app.get(
    '/demo',
    {
      schema: {
        operationId: 'getDemoPage',
        summary: 'The demo page: Uppy uploads over tus, then each scan status, live',
        description: demoOnly,
        security: [],
        response: { 200: { description: 'The page', content: { 'text/html': { schema: { type: 'string' } } } }, ...headersTooSlow }
      }
    },
    async (_request, reply) =>
      reply.type('text/html; charset=utf-8').header('content-security-policy', pagePolicy).header('cache-control', 'no-cache').send(page)
  )

  app.get(
    '/demo/assets/:name',
    {
      logLevel: 'warn',
      schema: {
        operationId: 'getDemoAsset',
        summary: "A file of the demo page (its script and style, Uppy's bundled build)",
        description: demoOnly,
        security: [],
        params: Type.Object({ name: Type.Union([...assets.keys()].map((name) => Type.Literal(name))) }),
        response: { 200: { description: 'The file', content: { '*/*': { schema: { type: 'string' } } } }, 400: ErrorBody, ...headersTooSlow }
      }
    },
    async (request, reply) => {
      const asset = assets.get(request.params.name) as DemoAsset
      return reply.type(asset.contentType).header('x-content-type-options', 'nosniff').header('cache-control', 'no-cache').send(asset.body)
    }
  )

  app.post(
    '/demo/token',
    {
      config: rateLimited('tokens'),
      schema: {
        operationId: 'mintDemoToken',
        summary: 'An upload token for the demo page, without a key',
        description: `${demoOnly} Answers requests from this machine only (a loopback address, and a loopback name in Host). The token allows one upload and lives ten minutes.`,
        security: [],
        response: { 201: MintedUploadToken, 403: ErrorBody, ...headersTooSlow, 429: ErrorBody, 503: ErrorBody }
      }
    },
    async (request, reply) => {
      if (!fromThisMachine(request)) throw new GatewayError('GW_FORBIDDEN', 'POST /demo/token answers requests from this machine only')
      return reply.code(201).header('cache-control', 'no-store').send(await minter.mint(demoGrant))
    }
  )
}

/**
 * A loopback peer, and a loopback name in Host: the second refuses a page of another site whose
 * name was rebound to 127.0.0.1 (DNS rebinding), which the browser lets read its answers.
 */
function fromThisMachine(request: FastifyRequest): boolean {
  const peer = (request.socket.remoteAddress ?? '').replace(/^::ffff:/, '')
  const host = request.hostname.replace(/^\[(.*)\]$/, '$1')
  const loopback = (address: string): boolean => address === '::1' || (isIP(address) === 4 && address.startsWith('127.'))
  return loopback(peer) && (host === 'localhost' || loopback(host))
}
