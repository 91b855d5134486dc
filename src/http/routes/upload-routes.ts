import type { Multipart } from '@fastify/multipart'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import Type from 'typebox'
import { GatewayError } from '../../domain/errors.ts'
import type { Metrics, UploadOutcome } from '../../ports/metrics.ts'
import { ownerOf, type Principal } from '../../domain/principal.ts'
import type { IncomingFile, IngestService, UploadRequest } from '../../services/ingest-service.ts'
import { statusETag, type LiveStatus, type WaitOutcome } from '../../services/live-status.ts'
import type { StatusService } from '../../services/status-service.ts'
import type { TransferGuard } from '../../services/transfer-guard.ts'
import { UploadView } from '../../services/upload-view.ts'
import type { Auth } from '../auth.ts'
import { rateLimited } from '../rate-limits.ts'
import { toGatewayError } from '../error-handler.ts'
import { ErrorBody, StatusQuery, UploadAccepted, UploadHeaders, UploadParams } from '../schemas.ts'

interface Deps {
  auth: Auth
  ingest: IngestService
  status: StatusService
  live: LiveStatus
  transfer: TransferGuard
  metrics: Metrics
}

const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 503: ErrorBody }
/** A 304 has no body: send() takes none. */
const NotModified = Type.Unsafe<void>({ type: 'null', description: 'Not modified' })

export const uploadRoutes: FastifyPluginAsyncTypebox<Deps> = async (app, { auth, ingest, status, live, transfer, metrics }) => {
  app.post(
    '/v1/uploads',
    {
      onRequest: auth.require('upload'),
      config: rateLimited('uploads'),
      schema: {
        operationId: 'uploadFile',
        summary: 'Upload one file into quarantine',
        description: "multipart/form-data with exactly one file in field `file`. Answers 202 once the file is stored in quarantine and recorded; the scan runs in the background. 503 GW_BUSY (with Retry-After) when the process is at its bound of concurrent uploads (an upload that finds the upload memory in use waits for it, the gateway then reads its body more slowly); 503 GW_STORE_UNAVAILABLE (with Retry-After) when the quarantine store fails or makes no progress for GW_STORE_TIMEOUT_MS. 408 GW_TOO_SLOW when the client sends below the minimum rate (GW_UPLOAD_MIN_RATE_BYTES) or nothing for GW_UPLOAD_IDLE_TIMEOUT_MS. 415 GW_TYPE_NOT_ALLOWED when the content (sniffed from its first bytes, whatever type the client declared) is not a type GW_ALLOWED_TYPES or the upload token allows; nothing is kept. Send an Idempotency-Key to retry safely.",
        consumes: ['multipart/form-data'],
        headers: UploadHeaders,
        response: { 202: UploadAccepted, ...errors, 408: ErrorBody, 409: ErrorBody, 413: ErrorBody, 415: ErrorBody, 429: ErrorBody }
      }
    },
    async (request, reply) => {
      if (!request.isMultipart()) throw new GatewayError('GW_UNSUPPORTED_MEDIA_TYPE')
      let outcome: UploadOutcome = 'error'
      // Aborted when the client goes away or is too slow: the upload stops, with that reason.
      const cancel = new AbortController()
      const onClose = (): void => {
        if (!reply.raw.writableFinished) cancel.abort(new GatewayError('GW_CLIENT_ABORTED'))
      }
      reply.raw.on('close', onClose)
      // The transfer guard bounds the client in its own time only. The socket's idle timeout would
      // also count the time we do not read it because the store is slow, and close it unanswered.
      const socket = request.raw.socket
      socket.setTimeout(0)
      const bytesBefore = socket.bytesRead
      const stopGuard = transfer.watch(
        { stream: request.raw, bytesReceived: () => socket.bytesRead - bytesBefore, complete: () => request.raw.complete },
        (tooSlow) => cancel.abort(tooSlow)
      )
      const key = request.headers['idempotency-key']
      try {
        const record = await ingest.accept(
          {
            files: fileParts(untilAborted(request.parts(), cancel.signal)),
            signal: cancel.signal,
            ...(key === undefined ? {} : { idempotency: { scope: auth.callerOf(request), key } }),
            ...tokenGrants(request.principal)
          },
          request.log
        )
        outcome = 'accepted'
        const statusUrl = `/v1/uploads/${record.id}`
        return reply
          .code(202)
          .header('location', statusUrl)
          .send({ id: record.id, status: 'pending', statusUrl, size: record.size, sha256: record.sha256, filename: record.filename })
      } catch (err) {
        outcome = outcomeOf(err)
        throw err
      } finally {
        stopGuard()
        reply.raw.off('close', onClose)
        metrics.uploadEnded(outcome)
      }
    }
  )

  app.get(
    '/v1/uploads/:id',
    {
      // An upload token reads the uploads it created, even expired (up to GW_TOKEN_READ_TTL): the status service checks.
      onRequest: auth.require('upload', { tokens: 'read' }),
      config: rateLimited('status'),
      // Pollers call this often: log failures, not every request.
      logLevel: 'warn',
      schema: {
        operationId: 'getUploadStatus',
        summary: 'Status of an upload',
        description:
          'Poll until status is clean, infected, unscannable, failed or rejected. Send If-None-Match with the last ETag to get 304 while nothing changed. ' +
          'Add ?wait=N (seconds, at most 30) to long-poll: the answer comes as soon as the status differs from that ETag (200 with the new ETag), or 304 after N seconds. ' +
          'An upload token reads only the uploads it created (403 otherwise), for GW_TOKEN_READ_TTL after each was created even once the token has expired.',
        params: UploadParams,
        querystring: StatusQuery,
        response: { 200: UploadView, 304: NotModified, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 429: ErrorBody, 503: ErrorBody }
      }
    },
    async (request, reply) => {
      const { id } = request.params
      const ifNoneMatch = request.headers['if-none-match']
      // Long-poll re-reads go through the same access checks.
      const read = () => status.get(id, request.principal)
      let view = await status.get(id, request.principal, ifNoneMatch ? (etag) => matches(ifNoneMatch, etag) : undefined)
      if (!view) throw new GatewayError('GW_NOT_FOUND', `no upload ${id}`)
      let etag = statusETag(view)
      const wait = request.query.wait ?? 0
      if (wait > 0 && matches(ifNoneMatch, etag)) {
        const outcome = await untilChanged(request, reply, (signal) => live.waitForChange(id, etag, wait * 1000, read, signal))
        if (outcome.kind === 'gone') throw new GatewayError('GW_NOT_FOUND', `no upload ${id}`)
        if (outcome.kind === 'changed') ({ view, etag } = outcome)
      }
      reply.header('etag', etag).header('cache-control', 'no-cache')
      if (matches(ifNoneMatch, etag)) return reply.code(304).send()
      // A string with a JSON content type is sent as it is: typed as the view it serialises.
      return reply.type('application/json; charset=utf-8').send(serialized(view, reply) as unknown as UploadView)
    }
  )
}

/** Bodies of views still in use, serialised by the route's schema once: a remembered view is polled many times. */
const bodies = new WeakMap<UploadView, string>()

function serialized(view: UploadView, reply: FastifyReply): string {
  let body = bodies.get(view)
  if (body === undefined) {
    body = reply.serialize(view) as string
    bodies.set(view, body)
  }
  return body
}

/** Runs a wait for a change, cut short when the client goes away; the socket's idle timeout does not count meanwhile. */
async function untilChanged(request: FastifyRequest, reply: FastifyReply, wait: (signal: AbortSignal) => Promise<WaitOutcome>): Promise<WaitOutcome> {
  const gone = new AbortController()
  const onClose = (): void => {
    if (!reply.raw.writableFinished) gone.abort()
  }
  reply.raw.on('close', onClose)
  const socket = request.raw.socket
  const idleTimeout = socket.timeout ?? 0
  socket.setTimeout(0)
  try {
    return await wait(gone.signal)
  } finally {
    reply.raw.off('close', onClose)
    if (!socket.destroyed) socket.setTimeout(idleTimeout)
  }
}

/** What an upload token brings to its upload: its owner fields, its size limit and one of its uses. */
function tokenGrants(principal: Principal): Pick<UploadRequest, 'owner' | 'maxBytes' | 'token' | 'allowedTypes'> {
  if (principal.kind !== 'token') return {}
  const { jti, maxUploads, expiresAt, maxSize, types } = principal
  return { owner: ownerOf(principal), token: { jti, maxUploads, expiresAt }, allowedTypes: types, ...(maxSize === null ? {} : { maxBytes: maxSize }) }
}

/** The files of a multipart body, sent in field `file`; other fields are skipped. */
async function* fileParts(parts: AsyncIterable<Multipart>): AsyncGenerator<IncomingFile> {
  for await (const part of parts) {
    if (part.type !== 'file') continue
    if (part.fieldname !== 'file') throw new GatewayError('GW_MISSING_FILE', `unexpected file in field '${part.fieldname}': send the file in field 'file'`)
    yield { body: part.file, filename: part.filename, contentType: part.mimetype }
  }
}

/** Ends an iteration with the signal's reason as soon as it aborts, even while it waits for the next part. */
async function* untilAborted<T>(parts: AsyncIterable<T>, signal: AbortSignal): AsyncGenerator<T> {
  const iterator = parts[Symbol.asyncIterator]()
  let onAbort = (): void => {}
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
  })
  aborted.catch(() => {})
  try {
    for (;;) {
      signal.throwIfAborted()
      const next = await Promise.race([iterator.next(), aborted])
      if (next.done) return
      yield next.value
    }
  } finally {
    signal.removeEventListener('abort', onAbort)
    // Not awaited: a pending next() may only settle once the connection closes.
    iterator.return?.().catch(() => {})
  }
}

function outcomeOf(err: unknown): UploadOutcome {
  const error = toGatewayError(err)
  // Refused by admission, before anything was read.
  if (error.code === 'GW_BUSY') return 'busy'
  if (error.code === 'GW_CLIENT_ABORTED') return 'aborted'
  if (error.code === 'GW_TOO_SLOW') return 'too_slow'
  if (error.status === 503) return 'unavailable'
  return error.status < 500 ? 'refused' : 'error'
}

/** If-None-Match holds a list of (possibly weak) ETags, or *. */
function matches(header: string | undefined, etag: string): boolean {
  if (!header) return false
  return header.split(',').some((candidate) => {
    const value = candidate.trim()
    return value === '*' || value.replace(/^W\//, '') === etag
  })
}
