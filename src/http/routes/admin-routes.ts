import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import { GatewayError } from '../../domain/errors.ts'
import { AuditView, ScanView, type HistoryReader } from '../../services/history-reader.ts'
import type { RescanService } from '../../services/rescan-service.ts'
import { RescanView } from '../../services/rescan-view.ts'
import type { UploadOperations } from '../../services/upload-operations.ts'
import type { Auth } from '../auth.ts'
import { ErrorBody, ReleaseRequest, RescanParams, RescanRequest, UploadParams } from '../schemas.ts'

interface Deps {
  auth: Auth
  rescans: RescanService
  uploadOperations: UploadOperations
  history: HistoryReader
}

const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 503: ErrorBody }
const Accepted = Type.Object({ id: Type.String(), status: Type.String() })

/** The operator's API: admin key only, except scan history, which upload keys may read like the status. */
export const adminRoutes: FastifyPluginAsyncTypebox<Deps> = async (app, { auth, rescans, uploadOperations, history }) => {
  const admin = { onRequest: auth.require('admin') }

  app.post(
    '/v1/rescans',
    { ...admin, schema: { operationId: 'startRescan', summary: 'Start a rescan of a scope, or an adoption', body: RescanRequest, response: { 202: RescanView, ...errors } } },
    async (request, reply) => {
      const rescan = await rescans.start(request.body.scope, auth.actorOf(request))
      return reply.code(202).header('location', `/v1/rescans/${rescan.id}`).send(rescan)
    }
  )

  app.get(
    '/v1/rescans',
    {
      ...admin,
      schema: {
        operationId: 'listRescans',
        summary: 'Rescans, newest first',
        querystring: Type.Object({ limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }) }),
        response: { 200: Type.Object({ rescans: Type.Array(RescanView) }), ...errors }
      }
    },
    async (request) => {
      return { rescans: await rescans.list(request.query.limit) }
    }
  )

  app.get(
    '/v1/rescans/:id',
    { ...admin, schema: { operationId: 'getRescan', summary: 'Progress of a rescan', params: RescanParams, response: { 200: RescanView, ...errors } } },
    async (request) => {
      const { id } = request.params
      const rescan = await rescans.get(id)
      if (!rescan) throw new GatewayError('GW_NOT_FOUND', `no rescan ${id}`)
      return rescan
    }
  )

  app.delete(
    '/v1/rescans/:id',
    { ...admin, schema: { operationId: 'cancelRescan', summary: 'Cancel a rescan', params: RescanParams, response: { 200: RescanView, ...errors, 409: ErrorBody } } },
    async (request) => {
      return rescans.cancel(request.params.id, auth.actorOf(request))
    }
  )

  app.post(
    '/v1/uploads/:id/release',
    {
      ...admin,
      schema: {
        operationId: 'releaseUpload',
        summary: 'Release an infected, unscannable or failed upload to production (a false positive)',
        description:
          'Recorded with who, when and why. The stored object is read and hashed first: only bytes whose size and SHA-256 match the upload are promoted (that object version exactly), otherwise 409. The upload is reported clean with `released` and stays in rolling rescans: a later detection other than the one released takes it out of production again.',
        params: UploadParams,
        body: ReleaseRequest,
        response: { 202: Accepted, ...errors, 409: ErrorBody }
      }
    },
    async (request, reply) => {
      const { id } = request.params
      const { reason } = request.body
      // The object is hashed while the operator waits: stop reading it if they leave.
      const abort = new AbortController()
      const onClose = (): void => {
        if (!reply.raw.writableFinished) abort.abort(new Error('client closed the connection'))
      }
      reply.raw.once('close', onClose)
      try {
        await uploadOperations.release(id, reason, auth.actorOf(request), abort.signal)
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
        operationId: 'rescanUpload',
        summary: 'Rescan one stored upload now',
        description: 'A clean, infected or unscannable upload is scanned again now; a failed one goes back to pending with a fresh budget of tries.',
        params: UploadParams,
        response: { 202: Accepted, ...errors, 409: ErrorBody }
      }
    },
    async (request, reply) => {
      const { id } = request.params
      await uploadOperations.rescan(id, auth.actorOf(request))
      return reply.code(202).send({ id, status: 'rescan scheduled' })
    }
  )

  app.get(
    '/v1/uploads/:id/scans',
    {
      // Scan history is for the application's backend: an upload token is refused.
      onRequest: auth.require('upload', { tokens: 'refuse' }),
      schema: { operationId: 'listUploadScans', summary: 'Every scan of an upload, oldest first', params: UploadParams, response: { 200: Type.Object({ scans: Type.Array(ScanView) }), ...errors } }
    },
    async (request) => {
      return { scans: await history.scans(request.params.id) }
    }
  )

  app.get(
    '/v1/audit',
    {
      ...admin,
      schema: {
        operationId: 'listAuditEntries',
        summary: 'Admin actions, newest first',
        querystring: Type.Object({
          limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
          before: Type.Optional(Type.String({ format: 'date-time', description: 'Only entries before this time (for paging).' }))
        }),
        response: { 200: Type.Object({ entries: Type.Array(AuditView) }), ...errors }
      }
    },
    async (request) => {
      const { limit, before } = request.query
      return { entries: await history.audit(limit, before ? Date.parse(before) : undefined) }
    }
  )
}
