import type { FastifyInstance } from 'fastify'
import Type from 'typebox'
import { GatewayError } from '../../domain/errors.ts'
import { auditView, rescanView, scanView } from '../../services/rescan-view.ts'
import type { RescanScope, RescanService } from '../../services/rescan-service.ts'
import type { Auth } from '../auth.ts'
import { AuditView, ErrorBody, ReleaseRequest, RescanParams, RescanRequest, RescanView, ScanView, UploadParams } from '../schemas.ts'

interface Deps {
  auth: Auth
  operations: RescanService
}

const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 503: ErrorBody }
const Accepted = Type.Object({ id: Type.String(), status: Type.String() })

/** The operator's API: admin key only, except scan history, which upload keys may read like the status. */
export async function adminRoutes(app: FastifyInstance, { auth, operations }: Deps): Promise<void> {
  const admin = { onRequest: auth.require('admin') }

  app.post(
    '/v1/rescans',
    { ...admin, schema: { summary: 'Start a rescan of a scope, or an adoption', body: RescanRequest, response: { 202: RescanView, ...errors } } },
    async (request, reply) => {
      const { scope } = request.body as { scope: RescanScope }
      const rescan = await operations.start(scope, auth.actorOf(request))
      return reply.code(202).header('location', `/v1/rescans/${rescan.id}`).send(rescanView(rescan))
    }
  )

  app.get(
    '/v1/rescans',
    {
      ...admin,
      schema: {
        summary: 'Rescans, newest first',
        querystring: Type.Object({ limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }) }),
        response: { 200: Type.Object({ rescans: Type.Array(RescanView) }), ...errors }
      }
    },
    async (request) => {
      const { limit } = request.query as { limit: number }
      return { rescans: (await operations.list(limit)).map((r) => rescanView(r)) }
    }
  )

  app.get(
    '/v1/rescans/:id',
    { ...admin, schema: { summary: 'Progress of a rescan', params: RescanParams, response: { 200: RescanView, ...errors } } },
    async (request) => {
      const { id } = request.params as { id: string }
      const rescan = await operations.get(id)
      if (!rescan) throw new GatewayError('GW_NOT_FOUND', `no rescan ${id}`)
      return rescanView(rescan)
    }
  )

  app.delete(
    '/v1/rescans/:id',
    { ...admin, schema: { summary: 'Cancel a rescan', params: RescanParams, response: { 200: RescanView, ...errors, 409: ErrorBody } } },
    async (request) => {
      const { id } = request.params as { id: string }
      return rescanView(await operations.cancel(id, auth.actorOf(request)))
    }
  )

  app.post(
    '/v1/uploads/:id/release',
    {
      ...admin,
      schema: {
        summary: 'Release an infected, unscannable or failed upload to production (a false positive)',
        description:
          'Recorded with who, when and why. The stored object is read and hashed first: only bytes whose size and SHA-256 match the upload are promoted (that object version exactly), otherwise 409. The upload is reported clean with `released` and stays in rolling rescans: a later detection other than the one released takes it out of production again.',
        params: UploadParams,
        body: ReleaseRequest,
        response: { 202: Accepted, ...errors, 409: ErrorBody }
      }
    },
    async (request, reply) => {
      const { id } = request.params as { id: string }
      const { reason } = request.body as { reason: string }
      // The object is hashed while the operator waits: stop reading it if they leave.
      const abort = new AbortController()
      const onClose = (): void => {
        if (!reply.raw.writableFinished) abort.abort(new Error('client closed the connection'))
      }
      reply.raw.once('close', onClose)
      try {
        await operations.release(id, reason, auth.actorOf(request), abort.signal)
      } finally {
        reply.raw.off('close', onClose)
      }
      return reply.code(202).send({ id, status: 'scanning' })
    }
  )

  app.post(
    '/v1/uploads/:id/rescan',
    {
      ...admin,
      schema: {
        summary: 'Rescan one stored upload now',
        description: 'A clean, infected or unscannable upload is scanned again now; a failed one goes back to pending with a fresh budget of tries.',
        params: UploadParams,
        response: { 202: Accepted, ...errors, 409: ErrorBody }
      }
    },
    async (request, reply) => {
      const { id } = request.params as { id: string }
      await operations.rescanOne(id, auth.actorOf(request))
      return reply.code(202).send({ id, status: 'rescan scheduled' })
    }
  )

  app.get(
    '/v1/uploads/:id/scans',
    {
      onRequest: auth.require('upload'),
      schema: { summary: 'Every scan of an upload, oldest first', params: UploadParams, response: { 200: Type.Object({ scans: Type.Array(ScanView) }), ...errors } }
    },
    async (request) => {
      const { id } = request.params as { id: string }
      return { scans: (await operations.scans(id)).map(scanView) }
    }
  )

  app.get(
    '/v1/audit',
    {
      ...admin,
      schema: {
        summary: 'Admin actions, newest first',
        querystring: Type.Object({
          limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
          before: Type.Optional(Type.String({ format: 'date-time', description: 'Only entries before this time (for paging).' }))
        }),
        response: { 200: Type.Object({ entries: Type.Array(AuditView) }), ...errors }
      }
    },
    async (request) => {
      const { limit, before } = request.query as { limit: number; before?: string }
      return { entries: (await operations.audit(limit, before ? Date.parse(before) : undefined)).map(auditView) }
    }
  )
}
