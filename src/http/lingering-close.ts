import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'

/** How long, and how much, a closing connection still reads so that its answer is not lost. */
const LINGER_MS = 2000
const LINGER_BYTES = 1024 * 1024

/**
 * An answer to a request whose body is still arriving ends with `Connection: close`. Closing a
 * socket while the client is still sending makes the kernel reset the connection, and a reset may
 * destroy the answer before the client read it. So, once the answer is written, the gateway
 * half-closes the connection and reads (and drops) what still arrives for a moment, then closes.
 */
export function lingerAfterAnswer(req: IncomingMessage): void {
  const socket = req.socket
  // Node calls destroySoon once an answer with Connection: close is written.
  socket.destroySoon = () => {
    socket.end()
    let read = 0
    const close = (): void => {
      clearTimeout(timer)
      socket.destroy()
    }
    const timer = setTimeout(close, LINGER_MS)
    socket.once('close', () => clearTimeout(timer))
    req.unpipe()
    req.on('data', (chunk: Buffer) => {
      read += chunk.length
      if (read > LINGER_BYTES) close()
    })
    req.resume()
  }
}

/** Writes an answer straight to a socket (no request was parsed), half-closes it, and closes it a moment later. */
export function endWithAnswer(socket: Socket, status: number, reason: string, body: unknown): void {
  const json = JSON.stringify(body)
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(json)}\r\n\r\n${json}`)
  const timer = setTimeout(() => socket.destroy(), LINGER_MS)
  socket.once('close', () => clearTimeout(timer))
}
