import { finished, PassThrough, type Readable } from 'node:stream'

export interface GuardedBody {
  /** What the store reads; destroying it never touches the caller's body. */
  stream: Readable
  /** The caller's body failed: it errored, or closed before its end (the client went away). */
  failure(): unknown
  /** Destroys the caller's body, for when the put failed or was aborted. */
  release(): void
}

/**
 * Readers tear down what they read (a broken-off for-await destroys its stream with an AbortError),
 * which would make the caller's body emit errors that look like the caller's. Reading through a
 * stream of our own keeps "the body failed" apart from "the store failed".
 */
export function guardBody(body: Readable): GuardedBody {
  const stream = new PassThrough()
  // Its reader sees its errors; this keeps one raised after the reader has gone from crashing the process.
  stream.on('error', () => undefined)
  let failure: unknown
  finished(body, (err) => {
    if (!err) return
    failure ??= err
    stream.destroy(err)
  })
  // pipe, not pipeline: a destroyed reader must not destroy the caller's body.
  body.pipe(stream)
  return { stream, failure: () => failure, release: () => void body.destroy() }
}
