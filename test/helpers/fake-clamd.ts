/**
 * Loopback TCP servers that speak just enough of clamd's protocol to misbehave on demand.
 * Each connection's INSTREAM framing is parsed, so tests can check chunk sizes and see
 * whether (and when) the client closed its socket.
 *
 * Health checks (PING, and an INSTREAM of exactly the EICAR test file) are answered like a clamd
 * with signatures would, whatever the behaviour, and are counted apart from `connections`: the
 * scanner sends no scan to an endpoint before it passed one. `checks: 'like-scans'` makes them
 * meet the behaviour too (a silent clamd that ignores PING, a clamd that calls EICAR clean).
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { connect, createServer, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { eicar } from './multipart.ts'

export type FakeBehaviour =
  /** Reads everything, never answers anything (not even PING or VERSION). */
  | { kind: 'silent' }
  /** Never reads: once the kernel buffers are full the client's writes stall. */
  | { kind: 'no-read' }
  /**
   * Writes `reply` verbatim (include the NUL yourself) once `after` happened: the end of the
   * INSTREAM body (default), or that many body bytes received. Then closes, unless keepOpen.
   */
  | { kind: 'reply'; reply: string | Buffer; after?: 'end' | number; delayMs?: number; keepOpen?: boolean }
  /** Closes without a word once that many body bytes arrived (0: right after the command). */
  | { kind: 'close'; afterBytes: number }
  /**
   * Forwards every byte to a real clamd on 127.0.0.1:port, holding its replies back for delayMs:
   * real verdicts, seen from the server side (chunkSizes and bodyBytes are not tracked).
   */
  | { kind: 'proxy'; port: number; delayMs?: number }

export interface FakeConnection {
  /** The first command, e.g. 'zINSTREAM', once it arrived. */
  command?: string
  /** Sizes of the INSTREAM chunks received, the final zero-length one included. */
  chunkSizes: number[]
  bodyBytes: number
  /** The client sent the zero-length chunk. */
  ended: boolean
  /** The socket is closed on the server side (the client closed it, or we did). */
  closed: boolean
  /** When the client's FIN/RST was seen. */
  closedAt?: number
  /** A health check answered apart from the behaviour (PING, EICAR probe); not listed in connections. */
  check?: 'ping' | 'eicar'
}

export interface FakeClamd {
  url: string
  port: number
  /** Every connection but the health checks answered apart (see checks). */
  readonly connections: FakeConnection[]
  /** EICAR probes (INSTREAMs of exactly the EICAR test file) answered as detected, apart from the behaviour. */
  readonly eicarChecks: number
  /**
   * Most INSTREAM exchanges in progress at once, each from its command to the first byte of the
   * reply: a window inside the client's own, so this never overcounts the client's concurrency.
   */
  readonly peakScans: number
  /** Resolves once every connection accepted so far is closed; rejects after timeoutMs. */
  allClosed(timeoutMs?: number): Promise<void>
  close(): Promise<void>
}

const VERSION = 'ClamAV 1.4.6/27500/Tue Nov 24 09:00:00 2026'

/** Counts INSTREAM exchanges in progress. */
class ScanCounter {
  readonly #open = new Set<FakeConnection>()
  peak = 0
  begin(conn: FakeConnection): void {
    this.#open.add(conn)
    this.peak = Math.max(this.peak, this.#open.size)
  }
  end(conn: FakeConnection): void {
    this.#open.delete(conn)
  }
}

/**
 * options.port: listen there (e.g. where a test saw connections refused) instead of a free port.
 * options.checks: 'answer' (default) answers health checks as a working clamd; 'like-scans' gives them the behaviour.
 */
export async function startFakeClamd(behaviour: FakeBehaviour, options: { port?: number; checks?: 'answer' | 'like-scans' } = {}): Promise<FakeClamd> {
  const sockets = new Set<Socket>()
  const connections: FakeConnection[] = []
  const scans = new ScanCounter()
  const server = createServer((socket) => {
    const conn: FakeConnection = { chunkSizes: [], bodyBytes: 0, ended: false, closed: false }
    connections.push(conn)
    sockets.add(socket)
    socket.on('error', () => {})
    socket.on('close', () => {
      conn.closed = true
      conn.closedAt = Date.now()
      sockets.delete(socket)
      scans.end(conn)
    })
    const behave = () => (behaviour.kind === 'proxy' ? proxy(socket, conn, behaviour, scans) : handle(socket, conn, behaviour, scans))
    if (options.checks === 'like-scans') behave()
    else answerChecks(socket, conn, behave, behaviour.kind !== 'no-read')
  })
  server.listen(options.port ?? 0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  if (!address || typeof address !== 'object') throw new Error('fake clamd: no address')
  const port = address.port

  return {
    url: `tcp://127.0.0.1:${port}`,
    port,
    get connections() {
      return connections.filter((c) => !c.check)
    },
    get eicarChecks() {
      return connections.filter((c) => c.check === 'eicar').length
    },
    get peakScans() {
      return scans.peak
    },
    async allClosed(timeoutMs = 2000) {
      // A socket that never reads would never notice the client's FIN: read now.
      for (const s of sockets) s.resume()
      const deadline = Date.now() + timeoutMs
      while (connections.some((c) => !c.closed)) {
        if (Date.now() > deadline) throw new Error(`fake clamd: ${sockets.size} connection(s) still open after ${timeoutMs} ms`)
        await sleep(10)
      }
    },
    async close() {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}

const probeReply = 'stream: Eicar-Test-Signature FOUND\0'

/**
 * Reads the start of a connection: PING and an INSTREAM of exactly the EICAR test file (one chunk,
 * as the scanner's health check sends it) are answered here; anything else is handed to the
 * behaviour with the bytes read so far put back.
 */
function answerChecks(socket: Socket, conn: FakeConnection, behave: () => void, reads: boolean): void {
  let head = Buffer.alloc(0)
  const handOver = () => {
    socket.off('data', onData)
    socket.pause()
    socket.unshift(head)
    behave()
    // A paused socket stays paused when a 'data' listener is added.
    if (reads) socket.resume()
  }
  const onData = (data: Buffer) => {
    head = Buffer.concat([head, data])
    const nul = head.indexOf(0)
    if (nul < 0) return
    const command = head.subarray(0, nul).toString()
    if (command === 'zPING') {
      conn.command = command
      conn.check = 'ping'
      socket.off('data', onData)
      return void socket.end('PONG\0')
    }
    if (command !== 'zINSTREAM') return handOver()
    const body = head.subarray(nul + 1)
    if (body.length < 4) return
    if (body.readUInt32BE(0) !== eicar.length) return handOver()
    const first = body.subarray(4, 4 + eicar.length)
    if (!eicar.subarray(0, first.length).equals(first)) return handOver()
    if (first.length < eicar.length || body.length < 4 + eicar.length + 4) return
    if (body.readUInt32BE(4 + eicar.length) !== 0) return handOver()
    conn.command = command
    conn.check = 'eicar'
    socket.off('data', onData)
    socket.end(probeReply)
  }
  socket.on('data', onData)
}

function handle(socket: Socket, conn: FakeConnection, behaviour: Exclude<FakeBehaviour, { kind: 'proxy' }>, scans: ScanCounter): void {
  if (behaviour.kind === 'no-read') {
    socket.pause()
    return
  }
  let buffered = Buffer.alloc(0)
  let command: string | undefined
  let pendingChunk = -1 // bytes still expected in the current chunk; -1: a length header comes next
  let replied = false

  const reply = () => {
    if (replied || behaviour.kind !== 'reply') return
    replied = true
    const send = () => {
      if (socket.destroyed) return
      scans.end(conn)
      socket.write(behaviour.reply)
      if (!behaviour.keepOpen) socket.end()
    }
    if (behaviour.delayMs) setTimeout(send, behaviour.delayMs)
    else send()
  }
  const onBody = (n: number) => {
    conn.bodyBytes += n
    if (behaviour.kind === 'close' && conn.bodyBytes >= behaviour.afterBytes) socket.destroy()
    if (behaviour.kind === 'reply' && typeof behaviour.after === 'number' && conn.bodyBytes >= behaviour.after) reply()
  }

  socket.on('data', (data: Buffer) => {
    buffered = Buffer.concat([buffered, data])
    if (command === undefined) {
      const nul = buffered.indexOf(0)
      if (nul < 0) return
      command = buffered.subarray(0, nul).toString()
      conn.command = command
      buffered = buffered.subarray(nul + 1)
      if (command !== 'zINSTREAM') {
        if (behaviour.kind === 'silent') return
        // Side requests (the scanner asks VERSION next to a scan) get a sane answer.
        if (command === 'zPING') return void socket.end('PONG\0')
        if (command === 'zVERSION') return void socket.end(`${VERSION}\0`)
        return void socket.end('UNKNOWN COMMAND\0')
      }
      scans.begin(conn)
      if (behaviour.kind === 'close' && behaviour.afterBytes === 0) return void socket.destroy()
    }
    while (!conn.ended && buffered.length > 0) {
      if (pendingChunk < 0) {
        if (buffered.length < 4) return
        pendingChunk = buffered.readUInt32BE(0)
        conn.chunkSizes.push(pendingChunk)
        buffered = buffered.subarray(4)
        if (pendingChunk === 0) {
          conn.ended = true
          if (behaviour.kind === 'reply' && (behaviour.after ?? 'end') === 'end') reply()
          return
        }
      }
      const take = Math.min(pendingChunk, buffered.length)
      buffered = buffered.subarray(take)
      pendingChunk -= take
      if (pendingChunk === 0) pendingChunk = -1
      onBody(take)
      if (socket.destroyed) return
    }
  })
}

function proxy(socket: Socket, conn: FakeConnection, behaviour: { port: number; delayMs?: number }, scans: ScanCounter): void {
  const upstream = connect({ host: '127.0.0.1', port: behaviour.port })
  const later = (fn: () => void) => (behaviour.delayMs ? void setTimeout(fn, behaviour.delayMs) : fn())
  let head = Buffer.alloc(0)
  upstream.on('error', () => socket.destroy())
  socket.on('close', () => upstream.destroy())
  socket.on('data', (data: Buffer) => {
    if (conn.command === undefined) {
      head = Buffer.concat([head, data])
      const nul = head.indexOf(0)
      if (nul >= 0) {
        conn.command = head.subarray(0, nul).toString()
        if (conn.command === 'zINSTREAM') scans.begin(conn)
      }
    }
    upstream.write(data)
  })
  socket.on('end', () => upstream.end())
  upstream.on('data', (data: Buffer) =>
    later(() => {
      scans.end(conn)
      if (!socket.destroyed) socket.write(data)
    })
  )
  upstream.on('end', () => later(() => socket.end()))
}

/**
 * A listening port that never accepts: a child process listens with a backlog of 1 and blocks
 * its event loop; once the accept queue is full the kernel drops further SYNs, so a connect
 * hangs until the client's connect timeout. Loopback only.
 */
export async function startUnacceptingListener(): Promise<{ url: string; port: number; close(): Promise<void> }> {
  const child = spawn(
    process.execPath,
    [
      '-e',
      `const s = require('net').createServer()
       s.listen({ host: '127.0.0.1', port: 0, backlog: 1 }, () => {
         process.stdout.write(s.address().port + '\\n')
         Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0)
       })`
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] }
  )
  const killOnExit = () => child.kill('SIGKILL')
  process.once('exit', killOnExit)
  const [line] = (await once(child.stdout, 'data')) as [Buffer]
  const port = Number(line.toString().trim())
  const fillers: Socket[] = []
  const close = async () => {
    for (const s of fillers) s.destroy()
    process.off('exit', killOnExit)
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit')
      child.kill('SIGKILL')
      await exited
    }
  }
  // Fill the accept queue until a connect no longer completes.
  for (let i = 0; ; i++) {
    const s = connect({ host: '127.0.0.1', port })
    s.on('error', () => {})
    fillers.push(s)
    const connected = await Promise.race([once(s, 'connect').then(() => true), sleep(300).then(() => false)])
    if (!connected) break
    if (i > 50) {
      await close()
      throw new Error('unaccepting listener: the accept queue never filled')
    }
  }
  return { url: `tcp://127.0.0.1:${port}`, port, close }
}
