/**
 * Opening a socket to clamd: its own connect timeout, abort, and no leaked socket on any exit
 * path. Every failure is a ScannerError.
 */
import { connect, type Socket } from 'node:net'
import { ScannerError, type ScannerEndpoint } from '../../ports/scanner.ts'

export interface ConnectOptions {
  connectTimeoutMs: number
  signal?: AbortSignal
}

/**
 * A connected socket. Received bytes arrive through net's `onread` callback, not as 'data'
 * events: after a failed write Node marks the readable side errored and drops pushed data,
 * while the onread callback still delivers it (see keepReadingAfterWriteError).
 */
export interface ClamdConnection {
  readonly socket: Socket
  readonly endpoint: ScannerEndpoint
  /** Sets where received bytes go; bytes that arrived before are delivered at once. */
  onData(handler: (data: Buffer) => void): void
}

const READ_BUFFER = 4096
const noop = () => {}

export function abortedError(signal: AbortSignal | undefined): ScannerError {
  return new ScannerError('aborted', 'scan aborted', { cause: signal?.reason })
}

/** Connects with its own timeout. The socket keeps a no-op 'error' listener so a late error can never crash the process. */
export function connectClamd(endpoint: ScannerEndpoint, opts: ConnectOptions): Promise<ClamdConnection> {
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) return reject(abortedError(opts.signal))
    let handler: ((data: Buffer) => void) | undefined
    const early: Buffer[] = []
    const onread = {
      buffer: Buffer.allocUnsafe(READ_BUFFER),
      callback: (n: number, buf: Uint8Array): boolean => {
        const data = Buffer.from(buf.subarray(0, n)) // the read buffer is reused
        if (handler) handler(data)
        else early.push(data)
        return true
      }
    }
    const socket =
      endpoint.kind === 'tcp' ? connect({ host: endpoint.host, port: endpoint.port, onread }) : connect({ path: endpoint.path, onread })
    socket.on('error', noop)
    const connection: ClamdConnection = {
      socket,
      endpoint,
      onData(h) {
        handler = h
        for (const data of early.splice(0)) h(data)
      }
    }
    const settle = (err?: ScannerError) => {
      clearTimeout(timer)
      opts.signal?.removeEventListener('abort', onAbort)
      socket.off('error', onError)
      socket.off('connect', onConnect)
      if (err) {
        socket.destroy()
        reject(err)
      } else resolve(connection)
    }
    const onConnect = () => settle()
    const onError = (err: NodeJS.ErrnoException) =>
      settle(new ScannerError('unavailable', `cannot connect to clamd at ${endpoint.url}: ${err.code ?? err.message}`, { cause: err }))
    const onAbort = () => settle(abortedError(opts.signal))
    const timer = setTimeout(
      () => settle(new ScannerError('connect_timeout', `no connection to clamd at ${endpoint.url} within ${opts.connectTimeoutMs} ms`)),
      opts.connectTimeoutMs
    )
    socket.once('connect', onConnect)
    socket.on('error', onError)
    opts.signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/**
 * Node destroys a socket, read side included, as soon as a write fails, and clamd's reply,
 * already in the receive buffer, would be lost. Streams destroy themselves on error through
 * their own destroy() method, so this socket's destroy() ignores write errors: reading goes on
 * (through onread) until the reply, a read error (which still destroys it) or the caller gives up.
 */
export function keepReadingAfterWriteError(socket: Socket, onWriteError: (err: Error) => void): void {
  const destroy = socket.destroy.bind(socket)
  socket.destroy = (err?: Error) => {
    if ((err as NodeJS.ErrnoException | undefined)?.syscall === 'write' && !socket.destroyed) {
      onWriteError(err as Error)
      return socket
    }
    return destroy(err)
  }
}
