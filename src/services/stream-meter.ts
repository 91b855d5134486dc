import { createHash, type Hash } from 'node:crypto'
import { Transform, Writable, type Readable, type TransformCallback } from 'node:stream'
import { pipeline } from 'node:stream/promises'

/** Raised by a StreamMeter whose stream grew past its limit. */
export class StreamLimitError extends Error {
  override name = 'StreamLimitError'
}

/**
 * A pass-through that counts bytes and hashes them with SHA-256 as they flow, and fails
 * the stream as soon as it grows past `limit` (so an oversized upload stops mid-stream).
 */
export class StreamMeter extends Transform {
  bytes = 0
  readonly #hash: Hash = createHash('sha256')
  readonly #limit: number
  #digest: string | null = null

  constructor(limit = Number.POSITIVE_INFINITY) {
    super()
    this.#limit = limit
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length
    if (this.bytes > this.#limit) {
      callback(new StreamLimitError(`stream is larger than ${this.#limit} bytes`))
      return
    }
    this.#hash.update(chunk)
    callback(null, chunk)
  }

  override _flush(callback: TransformCallback): void {
    this.#digest = this.#hash.digest('hex')
    callback()
  }

  /**
   * Reads `source` to its end through this meter and drops the bytes: measured, not kept (a
   * retried upload compared with the first, a stored object checked before a release).
   */
  async measure(source: Readable, signal?: AbortSignal): Promise<void> {
    await pipeline(source, this, new Writable({ write: (_chunk, _encoding, done) => done() }), { signal })
  }

  /** The SHA-256 of everything that passed, once the stream has ended; null before. */
  get sha256(): string | null {
    return this.#digest
  }
}
