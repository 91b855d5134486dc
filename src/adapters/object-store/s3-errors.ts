import { StoreUnavailableError } from '../../ports/object-store.ts'

interface SdkErrorShape {
  name?: string
  code?: string
  $retryable?: unknown
  $metadata?: { httpStatusCode?: number }
  errors?: unknown[]
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN'
])
const TRANSIENT_NAMES = new Set(['SlowDown', 'Throttling', 'ThrottlingException', 'RequestTimeout', 'TimeoutError'])

function shape(err: unknown): SdkErrorShape {
  return typeof err === 'object' && err !== null ? (err as SdkErrorShape) : {}
}

export function statusOf(err: unknown): number | undefined {
  return shape(err).$metadata?.httpStatusCode
}

/** The object (not the bucket) does not exist. HEAD answers a bare 404, so a missing bucket looks the same there. */
export function isMissingObject(err: unknown): boolean {
  const { name } = shape(err)
  return name === 'NoSuchKey' || (name === 'NotFound' && statusOf(err) === 404)
}

/** Errors where trying again later may work: the network, timeouts, throttling, 5xx, a bucket not created yet. */
export function isUnavailable(err: unknown): boolean {
  const e = shape(err)
  const status = e.$metadata?.httpStatusCode
  if ((status !== undefined && status >= 500) || e.$retryable) return true
  // NoSuchUpload: the multipart upload was aborted under a put (the orphan sweeper took it); a new try may work.
  if (e.name !== undefined && (TRANSIENT_NAMES.has(e.name) || e.name === 'NoSuchBucket' || e.name === 'NoSuchUpload')) return true
  if (e.code !== undefined && NETWORK_CODES.has(e.code)) return true
  // Node reports a refused dual-stack connect as an AggregateError of per-address errors.
  return Array.isArray(e.errors) && e.errors.some(isUnavailable)
}

/** StoreUnavailableError (with the SDK error as cause) for transient failures; anything else unchanged. */
export function toStoreError(err: unknown, what: string): unknown {
  if (err instanceof StoreUnavailableError || !isUnavailable(err)) return err
  const message = err instanceof Error ? err.message : String(err)
  return new StoreUnavailableError(`${what}: ${message}`, { cause: err })
}

/** What /readyz shows for a bucket that failed HeadBucket. */
export function describeBucketError(bucket: string, err: unknown, timeoutMs: number): string {
  const status = statusOf(err)
  if (status === 404) return `bucket ${bucket} does not exist`
  if (status === 403) return `access to bucket ${bucket} is denied`
  const e = err as { name?: string; message?: string; code?: string }
  // AbortError: check()'s own deadline fired.
  if (e.name === 'AbortError') return `bucket ${bucket} did not answer within ${timeoutMs} ms`
  return `bucket ${bucket} is unreachable: ${e.code ?? e.name ?? 'error'}: ${e.message ?? String(err)}`
}
