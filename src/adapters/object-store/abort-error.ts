/** The same error for every aborted store operation, whatever reason the caller gave (kept as cause). */
export function abortError(signal: AbortSignal): Error {
  return Object.assign(new Error('the operation was aborted', { cause: signal.reason }), { name: 'AbortError' })
}
