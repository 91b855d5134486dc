/**
 * Every error a client can see: a stable code, its HTTP status, and a default message.
 * The README's error table is written from this list (and a test keeps them in step).
 */
export const errorCodes = {
  GW_BAD_REQUEST: { status: 400, message: 'the request is malformed' },
  GW_BAD_MULTIPART: { status: 400, message: 'the multipart body is malformed' },
  GW_MISSING_FILE: { status: 400, message: "the request has no file in field 'file'" },
  GW_TOO_MANY_FILES: { status: 400, message: 'send exactly one file per upload' },
  GW_EMPTY_FILE: { status: 400, message: 'the file is empty' },
  GW_UNAUTHORIZED: { status: 401, message: 'an Authorization: Bearer <key> header is required' },
  GW_FORBIDDEN: { status: 403, message: 'this key is not allowed to do that' },
  GW_NOT_FOUND: { status: 404, message: 'no such resource' },
  GW_CONFLICT: { status: 409, message: 'the resource is not in a state that allows this' },
  GW_PAYLOAD_TOO_LARGE: { status: 413, message: 'the file is larger than the upload limit' },
  GW_UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'uploads must be multipart/form-data' },
  GW_CLIENT_ABORTED: { status: 499, message: 'the client closed the connection before the upload ended' },
  GW_INTERNAL: { status: 500, message: 'internal error' },
  GW_BUSY: { status: 503, message: 'the gateway is taking as many uploads as it can, try again later' },
  GW_SHUTTING_DOWN: { status: 503, message: 'this gateway instance is shutting down, try again (another instance will answer)' },
  GW_STORE_UNAVAILABLE: { status: 503, message: 'the quarantine store is unavailable, try again later' },
  GW_STATE_UNAVAILABLE: { status: 503, message: 'the state store is unavailable, try again later' },
  GW_TOO_SLOW: { status: 408, message: 'the client sent its request too slowly; try again on a faster connection' },
  GW_IDEMPOTENCY_CONFLICT: { status: 409, message: 'this Idempotency-Key was used for another file' },
  GW_IDEMPOTENCY_IN_PROGRESS: { status: 409, message: 'an upload with this Idempotency-Key is still in progress, try again later' },
  GW_TOKEN_INVALID: { status: 401, message: 'the upload token is not valid' },
  GW_TOKEN_EXPIRED: { status: 401, message: 'the upload token has expired: get a new one from your application' },
  GW_TOKEN_EXHAUSTED: { status: 403, message: 'this upload token has created as many uploads as it allows' },
  GW_TYPE_NOT_ALLOWED: { status: 415, message: 'this type of file is not allowed' },
  GW_RATE_LIMITED: { status: 429, message: 'too many requests, try again later' },
  GW_METHOD_NOT_ALLOWED: { status: 405, message: 'this method is not allowed here' }
} as const satisfies Record<string, { status: number; message: string }>

export type ErrorCode = keyof typeof errorCodes

/** Seconds a client should wait before retrying a 503 (or an upload still in progress). */
export const retryAfterSeconds = 5

export class GatewayError extends Error {
  override name = 'GatewayError'
  readonly code: ErrorCode
  readonly status: number
  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? errorCodes[code].message, options)
    this.code = code
    this.status = errorCodes[code].status
  }
}
