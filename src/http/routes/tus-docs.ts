import type { FastifySchema } from 'fastify'
import { ErrorBody, headersTooSlow } from '../schemas.ts'

// How the tus routes read in openapi.yaml. Their requests and answers are tus's own (the reply is
// hijacked): these schemas describe them for readers and validate nothing.

const none = (description: string, headers: Record<string, string> = {}) => ({
  type: 'null',
  description,
  headers: Object.fromEntries(Object.entries(headers).map(([name, text]) => [name, { type: 'string', description: text }]))
})
const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 413: ErrorBody, 503: ErrorBody }
const tusNote = 'tus 1.0.0 (https://tus.io/protocols/resumable-upload): send `Tus-Resumable: 1.0.0`.'

export const tusDocs: Record<'create' | 'head' | 'patch' | 'delete' | 'options' | 'get', FastifySchema> = {
  create: {
    operationId: 'createTusUpload',
    summary: 'Create a resumable upload (tus creation, creation-with-upload)',
    description: `${tusNote} \`Upload-Length\` is required (deferred length is refused, 400); above GW_MAX_UPLOAD_BYTES or the token's max_size, 413 GW_PAYLOAD_TOO_LARGE. \`Upload-Metadata\` \`filename\` (or \`name\`) and \`filetype\` are kept with the upload; metadata is echoed by HEAD, so put nothing secret in it. A body (\`Content-Type: application/offset+octet-stream\`) is the first bytes. The upload id in \`Location\` is the gateway upload id.`,
    response: {
      201: none('Created', { Location: 'The upload URL, /v1/tus/{id}', 'Upload-Offset': 'Bytes stored, with a body', 'Upload-Expires': 'When the unfinished upload expires (GW_TUS_EXPIRY)' }),
      ...errors
    }
  },
  head: {
    operationId: 'headTusUpload',
    summary: 'Offset of a resumable upload',
    description: `${tusNote} Answers how many bytes are stored, to resume from there. 404 once complete, terminated or expired (410 between its expiry and its removal). \`GET\` answers 405 GW_METHOD_NOT_ALLOWED: quarantined bytes are never served.`,
    response: { 200: none('The upload', { 'Upload-Offset': 'Bytes stored', 'Upload-Length': 'Total size', 'Upload-Metadata': 'As created' }), 404: none('No such upload'), 410: none('Expired') }
  },
  patch: {
    operationId: 'patchTusUpload',
    summary: 'Append bytes to a resumable upload',
    description: `${tusNote} \`Content-Type: application/offset+octet-stream\`, \`Upload-Offset\` as HEAD answered (409 otherwise). Any replica may take any PATCH. The PATCH that stores the last byte answers once the upload is recorded (pending, then scanned like any upload), with \`Upload-Status-Url\`.`,
    response: {
      204: none('Stored', { 'Upload-Offset': 'Bytes stored', 'Upload-Status-Url': 'On the final PATCH: /v1/uploads/{id}' }),
      409: none('Upload-Offset does not match'),
      410: none('Expired'),
      ...errors
    }
  },
  delete: {
    operationId: 'terminateTusUpload',
    summary: 'Terminate an unfinished resumable upload (tus termination)',
    description: `${tusNote} Its bytes are removed; a complete upload cannot be terminated (it is being scanned: see /v1/uploads/{id}).`,
    response: { 204: none('Terminated'), 400: none('Already complete'), 404: none('No such upload') }
  },
  options: {
    operationId: 'tusOptions',
    summary: 'tus capabilities',
    description: 'Tus-Version, Tus-Extension (creation, creation-with-upload, termination, expiration) and Tus-Max-Size. Needs no credentials; CORS preflights are answered the same way.',
    security: [],
    response: { 204: none('Capabilities', { 'Tus-Extension': 'Supported extensions', 'Tus-Max-Size': 'Largest upload' }), ...headersTooSlow }
  },
  // An operation with no success is no operation for a client generator (and redocly warns): the
  // 405 is said on HEAD instead.
  get: { hide: true, security: [], response: { 405: ErrorBody } }
}
