import { GatewayError } from '../domain/errors.ts'
import { StoreUnavailableError } from '../ports/object-store.ts'
import { StateUnavailableError } from '../ports/state-database.ts'
import { TokenExhaustedError, UploadIntentLostError } from '../ports/upload-intake.ts'

/**
 * What a client is told when a port fails: the one mapping of the ports' errors to the gateway's
 * codes. The HTTP error handler answers with it; ingest asks it whether a failure was the store's.
 * Null for an error that is no port's known failure (the edge makes it GW_INTERNAL). A scanner's
 * failure never reaches a client: scans run in the background and readiness reports it itself.
 */
export function gatewayErrorOf(err: unknown): GatewayError | null {
  if (err instanceof GatewayError) return err
  if (err instanceof StoreUnavailableError) return new GatewayError('GW_STORE_UNAVAILABLE', undefined, { cause: err })
  if (err instanceof StateUnavailableError) return new GatewayError('GW_STATE_UNAVAILABLE', undefined, { cause: err })
  if (err instanceof TokenExhaustedError) return new GatewayError('GW_TOKEN_EXHAUSTED', undefined, { cause: err })
  // Swept (older than GW_ORPHAN_AFTER) or abandoned while it was received: not accepted.
  if (err instanceof UploadIntentLostError) return new GatewayError('GW_STORE_UNAVAILABLE', 'the upload took longer than the gateway keeps an unfinished upload', { cause: err })
  return null
}
