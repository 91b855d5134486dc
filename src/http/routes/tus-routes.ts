import type { IncomingMessage } from 'node:http'
import { EVENTS, Server, type ServerOptions } from '@tus/server'
import { ERRORS } from '@tus/utils'
import type { FastifyCorsOptions } from '@fastify/cors'
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchema } from 'fastify'
import { GatewayError } from '../../domain/errors.ts'
import type { ResumableStorage } from '../../ports/resumable-storage.ts'
import type { ResumableUploads } from '../../services/resumable-uploads.ts'
import type { Auth } from '../auth.ts'
import { rateLimited } from '../rate-limits.ts'
import { toGatewayError } from '../error-handler.ts'
import { tusDocs } from './tus-docs.ts'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** @fastify/cors reads a route's own options here. */
    cors?: FastifyCorsOptions | false
  }
}

export interface TusDeps {
  auth: Auth
  resumable: ResumableUploads
  resumableStorage: ResumableStorage
  corsOrigins: readonly string[]
}

const PATH = '/v1/tus'
/** What a browser may send and read on tus requests (@tus/server adds the protocol's own headers to these). */
const TUS_HEADERS = ['Tus-Resumable', 'Upload-Length', 'Upload-Offset', 'Upload-Metadata', 'Upload-Defer-Length', 'Upload-Concat', 'Content-Type', 'Authorization', 'X-HTTP-Method-Override', 'X-Requested-With']
const EXPOSED = ['Location', 'Upload-Offset', 'Upload-Length', 'Upload-Expires', 'Tus-Resumable', 'Tus-Version', 'Tus-Extension', 'Tus-Max-Size', 'Upload-Status-Url', 'X-Request-Id', 'Retry-After']
const METHODS = ['POST', 'HEAD', 'PATCH', 'DELETE', 'OPTIONS']

/** tus's own error objects are plain {status_code, body}. */
interface TusError {
  status_code: number
  body: string
}

const gatewayBody = (error: GatewayError): TusError => ({ status_code: error.status, body: JSON.stringify({ error: { code: error.code, message: error.message } }) })

/**
 * tus 1.0 (creation, creation-with-upload, termination, expiration) at /v1/tus, handed to
 * @tus/server after the gateway's auth. Its responses are written by tus on the raw response
 * (the reply is hijacked), so Fastify's reply hooks do not run on them: tus sets the CORS headers
 * itself, from GW_CORS_ORIGINS; preflights are answered by @fastify/cors with the tus methods and
 * headers, before auth, so they need no credentials.
 */
export async function tusRoutes(app: FastifyInstance, { auth, resumable, resumableStorage, corsOrigins }: TusDeps): Promise<void> {
  const requests = new WeakMap<IncomingMessage, FastifyRequest>()
  const requestOf = (req: Request): FastifyRequest => {
    const raw = (req as Request & { runtime?: { node?: { req: IncomingMessage } } }).runtime?.node?.req
    const request = raw ? requests.get(raw) : undefined
    if (!request) throw new Error('a tus request reached @tus/server without passing the gateway route')
    return request
  }

  const options: ServerOptions & { datastore: ResumableStorage['store'] } = {
    path: PATH,
    datastore: resumableStorage.store,
    locker: resumableStorage.locker,
    relativeLocation: true,
    namingFunction: () => resumable.newId(),
    // OPTIONS runs no auth hook: its principal is still unset, and it is told the global limit.
    maxSize: (req) => resumable.limitFor(requestOf(req).principal ?? { kind: 'anonymous' }),
    disableTerminationForFinishedUploads: true,
    allowedOrigins: (origin) => corsOrigins.includes(origin),
    allowedHeaders: TUS_HEADERS,
    exposedHeaders: EXPOSED,
    async onUploadCreate(req, upload) {
      const request = requestOf(req)
      return { metadata: await resumable.begin(upload.id, request.principal, upload.size ?? 0, upload.metadata, request.log) }
    },
    async onIncomingRequest(req, id) {
      if (req.method === 'POST') return
      // An unknown upload is the handler's to answer (404 or 410). Any other failure fails closed:
      // the owner check must not be skipped because the store hiccuped while tus's own read works.
      const upload = await resumableStorage.store.getUpload(id).catch((err: unknown) => {
        if (err === ERRORS.FILE_NOT_FOUND || err === ERRORS.FILE_NO_LONGER_EXISTS) return null
        throw gatewayBody(toGatewayError(err))
      })
      if (!upload) return
      const request = requestOf(req)
      const created = upload.creation_date ? Date.parse(upload.creation_date) : 0
      try {
        resumable.assertMayTouch(request.principal, upload.metadata, created)
        // Every byte is stored but the upload is not recorded: its final PATCH failed after the
        // write (a client then learns from HEAD that it is done). Recorded now, so it is scanned.
        if (req.method === 'HEAD' && upload.size !== undefined && upload.offset === upload.size) {
          await resumable.finish(id, upload.metadata, created, request.log)
        }
      } catch (err) {
        const error = toGatewayError(err)
        if (error.status >= 500) request.log.error({ err, code: error.code, uploadId: id }, error.message)
        throw gatewayBody(error)
      }
    },
    async onUploadFinish(req, upload) {
      const request = requestOf(req)
      const created = upload.creation_date ? Date.parse(upload.creation_date) : Date.now()
      // The helpers stay until the answer is written: tus reads the upload again after this hook (POST).
      const { statusUrl } = await resumable.finish(upload.id, upload.metadata, created, request.log)
      return { headers: { 'Upload-Status-Url': statusUrl } }
    },
    onResponseError(req, err) {
      if (err === ERRORS.UNSUPPORTED_CREATION_DEFER_LENGTH_EXTENSION) {
        return gatewayBody(new GatewayError('GW_BAD_REQUEST', 'Upload-Length is required: uploads of deferred length are not accepted'))
      }
      if (err === ERRORS.ERR_MAX_SIZE_EXCEEDED || err === ERRORS.ERR_SIZE_EXCEEDED) {
        return gatewayBody(new GatewayError('GW_PAYLOAD_TOO_LARGE', `${err.body.trim()}: the largest upload is ${resumable.limitFor(requestOf(req).principal)} bytes`))
      }
      // tus's own answers (409 offset conflict, 404, 410 …) stay as the protocol has them.
      if ('status_code' in err) return undefined
      const error = toGatewayError(err)
      if (error.status >= 500) requestOf(req).log.error({ err, code: error.code }, error.message)
      return gatewayBody(error)
    }
  }
  const server = new Server(options)
  // Emitted once the final answer (POST with the whole body, or the last PATCH) is written.
  server.on(EVENTS.POST_FINISH, (req: Request, _res: Response, upload: { id: string }) => {
    resumable.removeHelpers(upload.id, requestOf(req).log).catch(() => undefined)
  })
  server.on(EVENTS.POST_TERMINATE, (req: Request, _res: Response, id: string) => {
    const request = requestOf(req)
    resumable.terminated(id).catch((err: unknown) => request.log.warn({ err, uploadId: id }, 'could not mark a terminated tus upload abandoned: the sweeper removes it on expiry'))
  })

  // The body is tus's to read, as it arrives: Fastify leaves it untouched.
  app.addContentTypeParser('application/offset+octet-stream', (_request, _payload, done) => done(null))
  const cors = { methods: METHODS, allowedHeaders: TUS_HEADERS, exposedHeaders: EXPOSED }
  const handle = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    requests.set(request.raw, request)
    reply.raw.setHeader('x-request-id', request.id)
    reply.hijack()
    await server.handle(request.raw, reply.raw)
  }
  const byId = `${PATH}/:id`
  // An upload's own token may go on with it after expiring (within GW_TOKEN_READ_TTL, see onIncomingRequest); creating one needs a live token.
  const tusRoute = (method: 'POST' | 'HEAD' | 'PATCH' | 'DELETE', url: string, schema: FastifySchema): void => {
    app.route({ method, url, onRequest: auth.require('upload', { tokens: method === 'POST' ? 'accept' : 'read' }), config: { cors, ...(method === 'POST' ? rateLimited('uploads') : {}) }, schema, handler: handle })
  }
  tusRoute('POST', PATH, tusDocs.create)
  tusRoute('HEAD', byId, tusDocs.head)
  tusRoute('PATCH', byId, tusDocs.patch)
  tusRoute('DELETE', byId, tusDocs.delete)
  app.route({ method: 'OPTIONS', url: PATH, config: { cors }, schema: tusDocs.options, handler: handle })
  app.route({ method: 'OPTIONS', url: byId, config: { cors }, schema: { hide: true, security: [] }, handler: handle })
  app.get(byId, { config: { cors }, exposeHeadRoute: false, schema: tusDocs.get }, async (_request, reply) => {
    reply.header('allow', METHODS.join(', '))
    throw new GatewayError('GW_METHOD_NOT_ALLOWED', 'quarantined bytes are never served: read the upload status at /v1/uploads/:id')
  })
}
