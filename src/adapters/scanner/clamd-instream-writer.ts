/** Writing an INSTREAM: the command, the body in length-prefixed chunks with backpressure, the end. */
import { once } from 'node:events'
import type { Socket } from 'node:net'
import type { Readable } from 'node:stream'

const INSTREAM = Buffer.from('zINSTREAM\0')
const END_OF_STREAM = Buffer.alloc(4)
const DEFAULT_CHUNK = 64 * 1024

export interface WriterHooks {
  /** True once nothing more may be sent: the outcome is decided, a write failed, or clamd answered. */
  stopped(): boolean
  /** A source chunk was read or a write was flushed. */
  progress(): void
  /** Body bytes handed to the socket. */
  sent(bytes: number): void
  /** The end of the stream is flushed: clamd now scans and is silent. */
  ended(): void
  /** Aborts a wait for 'drain'. */
  stop: AbortSignal
}

/**
 * Sends the whole INSTREAM, splitting source chunks bigger than chunkSize (default 64 KiB), and never has more
 * than one chunk waiting in the socket's buffer. Rejects when the source fails or 'drain' is
 * given up; the caller decides what that means.
 */
export async function writeInstream(socket: Socket, body: Readable, chunkSizeOption: number | undefined, hooks: WriterHooks): Promise<void> {
  const chunkSize = Math.max(1, Math.min(chunkSizeOption ?? DEFAULT_CHUNK, 0xffffffff))
  const write = async (buf: Buffer): Promise<void> => {
    const flushed = socket.write(buf, (err) => {
      if (!err) hooks.progress()
    })
    if (!flushed) await once(socket, 'drain', { signal: hooks.stop })
  }
  await write(INSTREAM)
  for await (const raw of body as AsyncIterable<unknown>) {
    if (hooks.stopped()) return
    hooks.progress()
    const chunk = toBuffer(raw)
    for (let off = 0; off < chunk.length; off += chunkSize) {
      const piece = chunk.subarray(off, off + chunkSize)
      const header = Buffer.allocUnsafe(4)
      header.writeUInt32BE(piece.length)
      socket.write(header)
      await write(piece)
      hooks.sent(piece.length)
      if (hooks.stopped()) return
    }
  }
  socket.write(END_OF_STREAM, (err) => {
    if (!err) hooks.ended()
  })
}

function toBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk
  if (typeof chunk === 'string') return Buffer.from(chunk)
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
  throw new TypeError(`the upload stream yielded a ${typeof chunk}, not bytes`)
}
