/**
 * A small clamd client: endpoints, PING/VERSION/RELOAD and INSTREAM with backpressure,
 * separate connect/idle/total timeouts, abort, and no leaked sockets on any exit path.
 * Every failure is a ScannerError; only an exact clamd reply becomes a verdict.
 */
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import type { Readable } from 'node:stream'
import { ScannerError, type EngineVersion, type ScanOutcome } from '../../ports/scanner.ts'

export type ClamdEndpoint =
  | { kind: 'tcp'; url: string; host: string; port: number }
  | { kind: 'unix'; url: string; path: string }

/** Parses `tcp://host:port` or `unix:///absolute/path`; throws on anything else. */
export function parseClamdEndpoint(url: string): ClamdEndpoint {
  const bad = (why: string) =>
    new Error(`invalid clamd endpoint ${JSON.stringify(url)}: ${why} (expected tcp://host:port or unix:///path)`)
  if (url.startsWith('unix://')) {
    const path = url.slice('unix://'.length)
    if (!path.startsWith('/')) throw bad('the socket path must be absolute')
    return { kind: 'unix', url, path }
  }
  if (!url.startsWith('tcp://')) throw bad('unknown scheme')
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw bad('not a URL')
  }
  if (!parsed.hostname) throw bad('missing host')
  if (!parsed.port) throw bad('missing port')
  if ((parsed.pathname !== '' && parsed.pathname !== '/') || parsed.search || parsed.hash || parsed.username) {
    throw bad('unexpected path, query or credentials')
  }
  // URL keeps IPv6 brackets; net.connect wants the bare address.
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1')
  return { kind: 'tcp', url: `tcp://${parsed.host}`, host, port: Number(parsed.port) }
}

export interface ConnectOptions {
  connectTimeoutMs: number
  signal?: AbortSignal
}

export interface CommandOptions extends ConnectOptions {
  /** Bound for the whole exchange after connecting. */
  timeoutMs: number
}

export interface InstreamOptions extends ConnectOptions {
  /** No byte read from the source, written to clamd or received from it for this long: give up. */
  idleTimeoutMs: number
  /** Bound for the whole scan, connect included; it alone bounds clamd's silence while it scans. */
  totalTimeoutMs: number
  /** Largest INSTREAM chunk; bigger source chunks are split. Default 64 KiB. */
  chunkSize?: number
}

export interface InstreamResult {
  outcome: ScanOutcome
  /** Body bytes sent to clamd. */
  bytes: number
}

const DEFAULT_CHUNK = 64 * 1024
const MAX_REPLY_BYTES = 64 * 1024
const READ_BUFFER = 4096
/** After a failed write, how long to wait for the reply that may already be in the receive buffer. */
const REPLY_GRACE_MS = 1000
const noop = () => {}

function abortedError(signal: AbortSignal | undefined): ScannerError {
  return new ScannerError('aborted', 'scan aborted', { cause: signal?.reason })
}

/**
 * A connected socket. Received bytes arrive through net's `onread` callback, not as 'data'
 * events: after a failed write Node marks the readable side errored and drops pushed data,
 * while the onread callback still delivers it (see keepReadingAfterWriteError).
 */
export interface ClamdConnection {
  readonly socket: Socket
  readonly endpoint: ClamdEndpoint
  /** Sets where received bytes go; bytes that arrived before are delivered at once. */
  onData(handler: (data: Buffer) => void): void
}

/** Connects with its own timeout. The socket keeps a no-op 'error' listener so a late error can never crash the process. */
export function connectClamd(endpoint: string | ClamdEndpoint, opts: ConnectOptions): Promise<ClamdConnection> {
  const ep = typeof endpoint === 'string' ? parseClamdEndpoint(endpoint) : endpoint
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
    const socket = ep.kind === 'tcp' ? connect({ host: ep.host, port: ep.port, onread }) : connect({ path: ep.path, onread })
    socket.on('error', noop)
    const connection: ClamdConnection = {
      socket,
      endpoint: ep,
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
      settle(new ScannerError('unavailable', `cannot connect to clamd at ${ep.url}: ${err.code ?? err.message}`, { cause: err }))
    const onAbort = () => settle(abortedError(opts.signal))
    const timer = setTimeout(
      () => settle(new ScannerError('connect_timeout', `no connection to clamd at ${ep.url} within ${opts.connectTimeoutMs} ms`)),
      opts.connectTimeoutMs
    )
    socket.once('connect', onConnect)
    socket.on('error', onError)
    opts.signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/** Sends one z-command and returns clamd's NUL-terminated reply (without the NUL). */
export async function command(endpoint: string | ClamdEndpoint, name: string, opts: CommandOptions): Promise<string> {
  const { socket, endpoint: ep, onData } = await connectClamd(endpoint, opts)
  return new Promise<string>((resolve, reject) => {
    let received = Buffer.alloc(0)
    const settle = (err: Error | null, reply?: string) => {
      clearTimeout(timer)
      opts.signal?.removeEventListener('abort', onAbort)
      socket.destroy()
      if (err) reject(err)
      else resolve(reply ?? '')
    }
    const onAbort = () => settle(abortedError(opts.signal))
    const timer = setTimeout(
      () => settle(new ScannerError('idle_timeout', `clamd at ${ep.url} did not answer ${name} within ${opts.timeoutMs} ms`)),
      opts.timeoutMs
    )
    opts.signal?.addEventListener('abort', onAbort, { once: true })
    onData((data) => {
      received = Buffer.concat([received, data])
      const nul = received.indexOf(0)
      if (nul >= 0) settle(null, received.subarray(0, nul).toString('utf8'))
      else if (received.length > MAX_REPLY_BYTES) settle(new ScannerError('protocol', `clamd reply to ${name} is too long`))
    })
    socket.on('close', () =>
      settle(new ScannerError('unavailable', `clamd at ${ep.url} closed the connection without answering ${name}`))
    )
    socket.write(`z${name}\0`)
  })
}

export async function ping(endpoint: string | ClamdEndpoint, opts: CommandOptions): Promise<void> {
  const reply = await command(endpoint, 'PING', opts)
  if (reply !== 'PONG') throw new ScannerError('protocol', `unexpected reply to PING: ${JSON.stringify(reply)}`)
}

export async function version(endpoint: string | ClamdEndpoint, opts: CommandOptions): Promise<EngineVersion> {
  return parseVersion(await command(endpoint, 'VERSION', opts))
}

/** Asks clamd to reload its database; clamd answers at once and reloads in the background. */
export async function reload(endpoint: string | ClamdEndpoint, opts: CommandOptions): Promise<void> {
  const reply = await command(endpoint, 'RELOAD', opts)
  if (reply !== 'RELOADING') throw new ScannerError('protocol', `unexpected reply to RELOAD: ${JSON.stringify(reply)}`)
}

const VERSION_RE = /^(ClamAV \d+(?:\.\d+)*[^/\s]*)(?:\/(\d+)\/([^/]+))?$/

/** `ClamAV 1.4.6` or `ClamAV 1.4.6/27500/Tue Nov 24 09:00:00 2026`. */
export function parseVersion(reply: string): EngineVersion {
  const m = VERSION_RE.exec(reply.trim())
  if (!m?.[1]) throw new ScannerError('protocol', `unexpected reply to VERSION: ${JSON.stringify(reply)}`)
  return { engine: m[1], signatureVersion: m[2] ? Number(m[2]) : null, signatureDate: m[3] ?? null }
}

/**
 * Heuristic "detections" that mean clamd could not fully scan the content (AlertExceedsMax,
 * AlertEncrypted*): the file is unscannable, neither clean nor malware.
 */
const UNSCANNABLE: { re: RegExp; why: string }[] = [
  { re: /^Heuristics\.Limits\.Exceeded(\.|$)/, why: 'scan limits exceeded' },
  { re: /^Heuristics\.Encrypted(\.|$)/, why: 'encrypted content' },
  { re: /^Heuristics\.XZ\.DicSizeLimit$/, why: 'scan limits exceeded' }
]

/** Maps one INSTREAM reply (NUL already stripped) to a verdict; anything unexpected throws. */
export function parseScanReply(reply: string): ScanOutcome {
  if (reply === 'stream: OK') return { result: 'clean' }
  const found = /^stream: (\S+) FOUND$/.exec(reply)
  if (found?.[1]) {
    const signature = found[1]
    const limit = UNSCANNABLE.find((u) => u.re.test(signature))
    if (limit) return { result: 'unscannable', reason: `${limit.why}: ${signature}` }
    return { result: 'infected', signature }
  }
  if (reply === 'INSTREAM size limit exceeded. ERROR') {
    return { result: 'unscannable', reason: 'stream size limit: larger than clamd StreamMaxLength' }
  }
  if (/^\S.* ERROR$/.test(reply)) throw new ScannerError('engine_error', `clamd error: ${reply}`)
  throw new ScannerError('protocol', `unexpected reply from clamd: ${JSON.stringify(reply.slice(0, 200))}`)
}

/** Connects, then streams body with INSTREAM. The body is destroyed on every exit path. */
export async function instream(endpoint: string | ClamdEndpoint, body: Readable, opts: InstreamOptions): Promise<InstreamResult> {
  const startedAt = Date.now()
  let connection: ClamdConnection
  try {
    connection = await connectClamd(endpoint, {
      connectTimeoutMs: Math.min(opts.connectTimeoutMs, opts.totalTimeoutMs),
      signal: opts.signal
    })
  } catch (err) {
    body.destroy()
    throw err
  }
  return instreamOn(connection, body, opts, startedAt)
}

const INSTREAM = Buffer.from('zINSTREAM\0')
const END_OF_STREAM = Buffer.alloc(4)

/**
 * INSTREAM over an established connection (lets a caller fail over between endpoints before
 * the body is touched). Destroys socket and body on every exit path.
 * startedAt: when the total timeout started (defaults to now).
 */
export function instreamOn(
  connection: ClamdConnection,
  body: Readable,
  opts: InstreamOptions,
  startedAt = Date.now()
): Promise<InstreamResult> {
  const { socket } = connection
  const chunkSize = Math.max(1, Math.min(opts.chunkSize ?? DEFAULT_CHUNK, 0xffffffff))
  const stopPump = new AbortController()
  let bytes = 0
  let received = Buffer.alloc(0)
  let socketError: Error | undefined
  let writeFailed = false

  return new Promise<InstreamResult>((resolve, reject) => {
    let done = false
    const finish = (err: Error | null, outcome?: ScanOutcome) => {
      if (done) return
      done = true
      clearTimeout(idleTimer)
      clearTimeout(totalTimer)
      clearTimeout(graceTimer)
      opts.signal?.removeEventListener('abort', onAbort)
      stopPump.abort()
      socket.destroy()
      body.destroy()
      if (err || !outcome) reject(err)
      else resolve({ outcome, bytes })
    }

    // The reply wins over every transport problem: clamd may answer and close while we
    // are still writing (StreamMaxLength), and the write then fails with EPIPE/ECONNRESET.
    const settleFromReply = (): boolean => {
      const nul = received.indexOf(0)
      if (nul < 0) return false
      try {
        finish(null, parseScanReply(received.subarray(0, nul).toString('utf8')))
      } catch (err) {
        finish(err as Error)
      }
      return true
    }
    const noReply = () => {
      if (received.length > 0) {
        return finish(new ScannerError('protocol', `clamd reply not terminated: ${JSON.stringify(received.toString('utf8', 0, 200))}`))
      }
      const why = socketError ? `: ${(socketError as NodeJS.ErrnoException).code ?? socketError.message}` : ''
      finish(new ScannerError('unavailable', `clamd closed the connection without a reply${why}`, { cause: socketError }))
    }
    const failUnlessReplied = (err: ScannerError) => {
      if (!settleFromReply()) finish(err)
    }

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
      stopPump.abort() // wakes a pump waiting for 'drain'
      // The reply, if clamd sent one, came before its FIN/RST and is already ours to read.
      graceTimer = setTimeout(() => settleFromReply() || noReply(), Math.min(REPLY_GRACE_MS, opts.idleTimeoutMs))
    })
    const sourceFailed = (cause: unknown) => {
      const msg = cause instanceof Error ? cause.message : String(cause)
      finish(new ScannerError('source_error', `reading the upload failed: ${msg}`, { cause }))
    }
    // Fail at once, even while the pump waits for 'drain'. Once the pump stopped on purpose
    // (leaving for-await destroys the body with an AbortError) the read side decides.
    body.on('error', (err) => {
      if (!writeFailed && received.length === 0) sourceFailed(err)
    })
    socket.on('error', (err: Error) => {
      socketError ??= err
    })
    connection.onData((data) => {
      touch()
      received = Buffer.concat([received, data])
      if (!settleFromReply() && received.length > MAX_REPLY_BYTES) {
        finish(new ScannerError('protocol', 'clamd reply is too long'))
      }
    })
    const onClosed = () => settleFromReply() || noReply()
    socket.on('end', onClosed)
    socket.on('close', onClosed)

    const write = async (buf: Buffer): Promise<void> => {
      const flushed = socket.write(buf, (err) => {
        if (!err) touch()
      })
      if (!flushed) await once(socket, 'drain', { signal: stopPump.signal })
    }
    // Stop sending once anything decided the outcome, a write failed, or clamd started to
    // answer (mid-stream it only answers to refuse, e.g. StreamMaxLength).
    const stopped = () => done || writeFailed || received.length > 0

    const pump = async () => {
      await write(INSTREAM)
      for await (const raw of body as AsyncIterable<unknown>) {
        if (stopped()) return
        touch()
        const chunk = toBuffer(raw)
        for (let off = 0; off < chunk.length; off += chunkSize) {
          const piece = chunk.subarray(off, off + chunkSize)
          const header = Buffer.allocUnsafe(4)
          header.writeUInt32BE(piece.length)
          socket.write(header)
          await write(piece)
          bytes += piece.length
          if (stopped()) return
        }
      }
      // Once the end is flushed clamd scans and is silent; only the total timeout applies.
      socket.write(END_OF_STREAM, (err) => {
        if (err || done) return
        idleArmed = false
        clearTimeout(idleTimer)
      })
    }

    pump().catch((err: unknown) => {
      // A failed write is not final: the read side decides, so that a reply that arrived wins.
      if (!done && !writeFailed && !socket.destroyed) sourceFailed(err)
    })
  })
}

/**
 * Node destroys a socket, read side included, as soon as a write fails, and clamd's reply,
 * already in the receive buffer, would be lost. Streams destroy themselves on error through
 * their own destroy() method, so this socket's destroy() ignores write errors: reading goes on
 * (through onread) until the reply, a read error (which still destroys it) or the grace timer.
 */
function keepReadingAfterWriteError(socket: Socket, onWriteError: (err: Error) => void): void {
  const destroy = socket.destroy.bind(socket)
  socket.destroy = (err?: Error) => {
    if ((err as NodeJS.ErrnoException | undefined)?.syscall === 'write' && !socket.destroyed) {
      onWriteError(err as Error)
      return socket
    }
    return destroy(err)
  }
}

function toBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk
  if (typeof chunk === 'string') return Buffer.from(chunk)
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
  throw new TypeError(`the upload stream yielded a ${typeof chunk}, not bytes`)
}

/** The EICAR test string, assembled at run time so this source file is not itself detected. */
export function eicarTestFile(): Buffer {
  return Buffer.from('X5O!P%@AP[4\\PZX54(P^)7CC)7}$' + 'EICAR-STANDARD-ANTIVIRUS-' + 'TEST-FILE!$H+H*')
}
