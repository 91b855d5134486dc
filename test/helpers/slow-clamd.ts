import { once } from 'node:events'
import { createServer, type Socket } from 'node:net'
import { eicar } from './multipart.ts'

export interface SlowClamd {
  url: string
  /**
   * INSTREAM scans received so far, and whether each one's client went away before the answer.
   * probe: the body held the EICAR test string (a health check), answered at once.
   */
  scans: Array<{ startedAt: number; bytes: number; closedEarly: boolean; probe: boolean }>
  close(): Promise<void>
}

/**
 * A clamd that takes its time: it reads a whole zINSTREAM body, then answers `stream: OK` only
 * after delayMs (a big file being scanned). PING, VERSION and the EICAR probes of health checks
 * are answered at once, as a busy clamd does. Its timers are cleared by close(), so nothing
 * keeps the test process alive.
 */
export async function startSlowClamd(delayMs: number): Promise<SlowClamd> {
  const sockets = new Set<Socket>()
  const timers = new Set<NodeJS.Timeout>()
  const scans: SlowClamd['scans'] = []
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
    socket.on('close', () => sockets.delete(socket))
    let buffered = Buffer.alloc(0)
    let command: string | undefined
    let scan: SlowClamd['scans'][number] | undefined
    let answered = false
    let head = Buffer.alloc(0) // the first bytes of the body, to recognise a probe
    socket.on('data', (data: Buffer) => {
      buffered = Buffer.concat([buffered, data])
      if (command === undefined) {
        const nul = buffered.indexOf(0)
        if (nul < 0) return
        command = buffered.subarray(0, nul).toString()
        buffered = buffered.subarray(nul + 1)
        if (command === 'zPING') return void socket.end('PONG\0')
        if (command === 'zVERSION') return void socket.end('ClamAV 1.4.6/27500/Tue Nov 24 09:00:00 2026\0')
        if (command !== 'zINSTREAM') return void socket.end('UNKNOWN COMMAND\0')
        const started = { startedAt: Date.now(), bytes: 0, closedEarly: false, probe: false }
        scan = started
        scans.push(started)
        socket.on('close', () => {
          if (!answered) started.closedEarly = true
        })
      }
      // Chunks: 4-byte big-endian length, then the bytes; a zero length ends the stream.
      while (buffered.length >= 4 && scan) {
        const length = buffered.readUInt32BE(0)
        if (length === 0) {
          buffered = Buffer.alloc(0)
          if (scan.probe) {
            answered = true
            return void socket.end('stream: Win.Test.EICAR_HDB-1 FOUND\0')
          }
          const timer = setTimeout(() => {
            timers.delete(timer)
            answered = true
            if (!socket.destroyed) socket.end('stream: OK\0')
          }, delayMs)
          timers.add(timer)
          socket.once('close', () => {
            clearTimeout(timer)
            timers.delete(timer)
          })
          return
        }
        if (buffered.length < 4 + length) return
        scan.bytes += length
        if (head.length < 4096) head = Buffer.concat([head, buffered.subarray(4, 4 + Math.min(length, 4096))])
        scan.probe = head.includes(eicar)
        buffered = buffered.subarray(4 + length)
      }
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  if (!address || typeof address !== 'object') throw new Error('slow clamd: no address')
  return {
    url: `tcp://127.0.0.1:${address.port}`,
    scans,
    async close() {
      for (const timer of timers) clearTimeout(timer)
      timers.clear()
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}
