/**
 * One INSTREAM scan: separate idle and total timeouts, abort, and clamd's reply read even after
 * a write error (past StreamMaxLength clamd answers and closes while we still write).
 */
import type { Readable } from 'node:stream'
import { ScannerError, type ScannerEndpoint, type ScanVerdict } from '../../ports/scanner.ts'
import { abortedError, connectClamd, keepReadingAfterWriteError, type ClamdConnection, type ConnectOptions } from './clamd-connection.ts'
import { parseScanReply, ReplyBuffer } from './clamd-replies.ts'
import { writeInstream } from './clamd-instream-writer.ts'

export interface InstreamOptions extends ConnectOptions {
  /** No byte read from the source, written to clamd or received from it for this long: give up. */
  idleTimeoutMs: number
  /** Bound for the whole scan, connect included; it alone bounds clamd's silence while it scans. */
  totalTimeoutMs: number
  /** Largest INSTREAM chunk; bigger source chunks are split. Default 64 KiB. */
  chunkSize?: number
}

export interface InstreamResult {
  outcome: ScanVerdict
  /** Body bytes sent to clamd. */
  bytes: number
}

/** After a failed write, how long to wait for the reply that may already be in the receive buffer. */
const REPLY_GRACE_MS = 1000

/** Connects, then streams body with INSTREAM. The body is destroyed on every exit path. */
export async function instream(endpoint: ScannerEndpoint, body: Readable, opts: InstreamOptions): Promise<InstreamResult> {
  const startedAt = Date.now()
  const connectTimeoutMs = Math.min(opts.connectTimeoutMs, opts.totalTimeoutMs)
  const connection = await connectClamd(endpoint, { connectTimeoutMs, signal: opts.signal }).catch((err: unknown) => {
    body.destroy()
    throw err
  })
  return instreamOn(connection, body, opts, startedAt)
}

/**
 * INSTREAM over an established connection (lets a caller fail over between endpoints before the
 * body is touched); startedAt: when the total timeout started. Destroys socket and body on every exit path.
 */
export function instreamOn(connection: ClamdConnection, body: Readable, opts: InstreamOptions, startedAt = Date.now()): Promise<InstreamResult> {
  const { socket } = connection
  const stopWriter = new AbortController()
  const received = new ReplyBuffer()
  let bytes = 0
  let socketError: Error | undefined
  let writeFailed = false

  return new Promise<InstreamResult>((resolve, reject) => {
    let done = false
    const finish = (err: Error | null, outcome?: ScanVerdict) => {
      if (done) return
      done = true
      for (const timer of [idleTimer, totalTimer, graceTimer]) clearTimeout(timer)
      opts.signal?.removeEventListener('abort', onAbort)
      stopWriter.abort()
      socket.destroy()
      body.destroy()
      if (err || !outcome) reject(err)
      else resolve({ outcome, bytes })
    }

    // The reply wins over every transport problem: clamd may answer and close while we
    // are still writing (StreamMaxLength), and the write then fails with EPIPE/ECONNRESET.
    const settleFromReply = (): boolean => {
      const reply = received.complete()
      if (reply === null) return false
      try {
        finish(null, parseScanReply(reply))
      } catch (err) {
        finish(err as Error)
      }
      return true
    }
    const noReply = () => {
      if (received.started) return finish(new ScannerError('protocol', `clamd reply not terminated: ${received.preview()}`))
      const why = socketError ? `: ${(socketError as NodeJS.ErrnoException).code ?? socketError.message}` : ''
      finish(new ScannerError('unavailable', `clamd closed the connection without a reply${why}`, { cause: socketError }))
    }
    const failUnlessReplied = (err: ScannerError) => settleFromReply() || finish(err)

    const idleTimer = setTimeout(
      () => failUnlessReplied(new ScannerError('idle_timeout', `no progress for ${opts.idleTimeoutMs} ms while streaming to clamd`)),
      opts.idleTimeoutMs
    )
    let idleArmed = true
    const touch = () => {
      if (idleArmed && !done) idleTimer.refresh()
    }
    const totalTimer = setTimeout(
      () => failUnlessReplied(new ScannerError('total_timeout', `scan not finished within ${opts.totalTimeoutMs} ms`)),
      Math.max(0, startedAt + opts.totalTimeoutMs - Date.now())
    )
    let graceTimer: NodeJS.Timeout | undefined
    const onAbort = () => failUnlessReplied(abortedError(opts.signal))
    if (opts.signal?.aborted) return onAbort()
    opts.signal?.addEventListener('abort', onAbort, { once: true })

    keepReadingAfterWriteError(socket, (err) => {
      if (done || writeFailed) return
      socketError ??= err
      writeFailed = true
      stopWriter.abort() // wakes a writer waiting for 'drain'
      // The reply, if clamd sent one, came before its FIN/RST and is already ours to read.
      graceTimer = setTimeout(() => settleFromReply() || noReply(), Math.min(REPLY_GRACE_MS, opts.idleTimeoutMs))
    })
    const sourceFailed = (cause: unknown) =>
      finish(new ScannerError('source_error', `reading the upload failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause }))
    // Fail at once, even while the writer waits for 'drain'. Once the writer stopped on purpose
    // (leaving for-await destroys the body with an AbortError) the read side decides.
    body.on('error', (err) => {
      if (!writeFailed && !received.started) sourceFailed(err)
    })
    socket.on('error', (err: Error) => (socketError ??= err))
    connection.onData((data) => {
      touch()
      try {
        received.push(data, 'reply')
      } catch (err) {
        return finish(err as ScannerError)
      }
      settleFromReply()
    })
    const onClosed = () => settleFromReply() || noReply()
    socket.on('end', onClosed)
    socket.on('close', onClosed)

    writeInstream(socket, body, opts.chunkSize, {
      // Mid-stream clamd only answers to refuse (StreamMaxLength): stop sending then too.
      stopped: () => done || writeFailed || received.started,
      progress: touch,
      sent: (n) => (bytes += n),
      // Once the end is flushed clamd scans and is silent; only the total timeout applies.
      ended: () => {
        if (done) return
        idleArmed = false
        clearTimeout(idleTimer)
      },
      stop: stopWriter.signal
    }).catch((err: unknown) => {
      // A failed write is not final: the read side decides, so that a reply that arrived wins.
      if (!done && !writeFailed && !socket.destroyed) sourceFailed(err)
    })
  })
}
