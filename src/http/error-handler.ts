import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { GatewayError, retryAfterSeconds, type ErrorCode } from '../domain/errors.ts'
import { gatewayErrorOf } from '../services/port-errors.ts'
import { lingerAfterAnswer } from './lingering-close.ts'

/** Errors raised by Fastify and its plugins, by their code, as the gateway's own. */
const fastifyCodes: Record<string, ErrorCode> = {
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'GW_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'GW_UNSUPPORTED_MEDIA_TYPE',
  FST_REQ_FILE_TOO_LARGE: 'GW_PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_BODY_TOO_LARGE: 'GW_PAYLOAD_TOO_LARGE',
  FST_FILES_LIMIT: 'GW_TOO_MANY_FILES',
  FST_PARTS_LIMIT: 'GW_BAD_MULTIPART',
  FST_FIELDS_LIMIT: 'GW_BAD_MULTIPART',
  FST_PROTO_VIOLATION: 'GW_BAD_MULTIPART',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'GW_BAD_REQUEST',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'GW_BAD_REQUEST',
  FST_ERR_VALIDATION: 'GW_BAD_REQUEST'
}

/** busboy reports a broken multipart body with plain errors; these are their messages. */
const malformedMultipart = /^(Unexpected end of (form|file)|Malformed (part )?header|Multipart: Boundary not found|Malformed urlencoded form|Part terminated early)/i

/** Any error, as the gateway error the client will see: the ports' failures, then Fastify's, else internal. */
export function toGatewayError(err: unknown): GatewayError {
  const known = gatewayErrorOf(err)
  if (known) return known
  const fe = err as Partial<FastifyError>
  const mapped = fe.code ? fastifyCodes[fe.code] : undefined
  if (mapped) return new GatewayError(mapped, mapped === 'GW_BAD_REQUEST' || mapped === 'GW_BAD_MULTIPART' ? fe.message : undefined, { cause: err })
  if (typeof fe.message === 'string' && malformedMultipart.test(fe.message)) return new GatewayError('GW_BAD_MULTIPART', fe.message, { cause: err })
  if (fe.statusCode === 400) return new GatewayError('GW_BAD_REQUEST', fe.message, { cause: err })
  return new GatewayError('GW_INTERNAL', undefined, { cause: err })
}

function sendError(reply: FastifyReply, error: GatewayError): FastifyReply {
  if (error.status === 503 || error.code === 'GW_IDEMPOTENCY_IN_PROGRESS') reply.header('retry-after', String(retryAfterSeconds))
  if (error.code === 'GW_UNAUTHORIZED') reply.header('www-authenticate', 'Bearer')
  if (error.code === 'GW_TOKEN_INVALID' || error.code === 'GW_TOKEN_EXPIRED') reply.header('www-authenticate', 'Bearer error="invalid_token"')
  return reply.code(error.status).type('application/json').send({ error: { code: error.code, message: error.message } })
}

/** One error shape for every failure: {"error": {"code": "GW_...", "message": "..."}}. */
export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const error = toGatewayError(err)
    // A refused upload whose body is still arriving: close the connection after answering,
    // or Node would read (and discard) the rest of a body we already said no to.
    // A draining replica closes too, so the client's next request goes to another one.
    if (!request.raw.complete || error.code === 'GW_SHUTTING_DOWN') reply.header('connection', 'close')
    if (!request.raw.complete) lingerAfterAnswer(request.raw)
    if (error.status >= 500) request.log.error({ err, code: error.code }, error.message)
    else request.log.info({ code: error.code, reason: (err as Error).message }, 'request refused')
    return sendError(reply, error)
  })
  app.setNotFoundHandler((request, reply) => sendError(reply, new GatewayError('GW_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`)))
}
