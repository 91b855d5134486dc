import { abortError } from './abort-error.ts'

/**
 * The part buffers every put of a process fills, shared and reused: at most `capacity` buffers of
 * `bufferBytes` ever exist (allocated on first need, then kept, so they make no garbage). A put
 * that finds none free waits for one, in order of asking; meanwhile it does not read its body,
 * which backs up to the client's TCP connection.
 */
export class PartBufferPool {
  readonly bufferBytes: number
  readonly capacity: number
  readonly #free: Buffer[] = []
  readonly #waiting: { resolve: (buffer: Buffer) => void }[] = []
  #allocated = 0
  #taken = 0

  constructor(bufferBytes: number, capacity: number) {
    if (capacity < 1) throw new RangeError('a part buffer pool needs room for one buffer at least')
    this.bufferBytes = bufferBytes
    this.capacity = capacity
  }

  /** Buffers handed out and not given back. */
  get taken(): number {
    return this.#taken
  }

  /** Buffers that exist (taken or free): the pool's memory. */
  get allocated(): number {
    return this.#allocated
  }

  /** A buffer, at once when one is free; onWait is called only when the caller has to wait. */
  async take(signal?: AbortSignal, onWait?: (waiting: boolean) => void): Promise<Buffer> {
    signal?.throwIfAborted()
    const ready = this.#free.pop() ?? (this.#allocated < this.capacity ? this.#allocate() : null)
    if (ready) {
      this.#taken++
      return ready
    }
    onWait?.(true)
    try {
      return await new Promise<Buffer>((resolve, reject) => {
        const waiter = {
          resolve: (buffer: Buffer): void => {
            signal?.removeEventListener('abort', onAbort)
            this.#taken++
            resolve(buffer)
          }
        }
        const onAbort = (): void => {
          const at = this.#waiting.indexOf(waiter)
          if (at >= 0) this.#waiting.splice(at, 1)
          reject(abortError(signal as AbortSignal))
        }
        signal?.addEventListener('abort', onAbort, { once: true })
        this.#waiting.push(waiter)
      })
    } finally {
      onWait?.(false)
    }
  }

  /** Gives a buffer back: to the longest waiting put, or to the free list. Its old bytes are never sent again (puts send only what they filled). */
  give(buffer: Buffer): void {
    this.#taken--
    const next = this.#waiting.shift()
    if (next) next.resolve(buffer)
    else this.#free.push(buffer)
  }

  #allocate(): Buffer {
    this.#allocated++
    // Outside Node's small-buffer slab, and not zeroed: only filled bytes are ever read.
    return Buffer.allocUnsafeSlow(this.bufferBytes)
  }
}
