import type { Readable } from 'node:stream'
import { GatewayError } from '../domain/errors.ts'

export interface TransferGuardOptions {
  /** Least average rate over `windowMs` of the client's time; 0: no minimum. */
  minBytesPerSecond: number
  windowMs: number
  /** Longest stretch of the client's time without a byte. */
  idleTimeoutMs: number
}

/** An upload as the guard sees it. */
export interface TransferSource {
  /** The request body; its 'pause' and 'resume' tell when the gateway stops reading it (backpressure). */
  stream: Readable
  /** Bytes received from the client so far. */
  bytesReceived(): number
  /** True once the client has sent everything: from then on it only waits for us. */
  complete(): boolean
}

/**
 * Bounds how slowly a client may send an upload: at least `minBytesPerSecond` on average over a
 * sliding window, and never nothing for `idleTimeoutMs`. Only the client's time counts: while the
 * gateway does not read the request because its own writes to the store are backed up, the clocks
 * stop, so a slow store is never blamed on its clients.
 */
export class TransferGuard {
  readonly #options: TransferGuardOptions
  readonly #tickMs: number

  constructor(options: TransferGuardOptions) {
    this.#options = options
    const shortest = options.minBytesPerSecond > 0 ? Math.min(options.windowMs, options.idleTimeoutMs) : options.idleTimeoutMs
    this.#tickMs = Math.min(1000, Math.max(20, Math.floor(shortest / 8)))
  }

  /** Watches an upload until the returned function is called; onTooSlow is called at most once. */
  watch(source: TransferSource, onTooSlow: (error: GatewayError) => void): () => void {
    const { minBytesPerSecond, windowMs, idleTimeoutMs } = this.#options
    const { stream } = source
    let last = Date.now()
    // The client's time so far: wall time less what the gateway spent not reading.
    let clientMs = 0
    // Not reading since (null: reading), and for how long in all since the last tick.
    let heldSince: number | null = stream.readableFlowing === true ? null : last
    let heldMs = 0
    const onPause = (): void => {
      heldSince ??= Date.now()
    }
    const onResume = (): void => {
      // 'resume' is emitted a tick after resume(), possibly after a pause() that came in between.
      if (heldSince === null || stream.readableFlowing !== true) return
      heldMs += Date.now() - Math.max(heldSince, last)
      heldSince = null
    }
    stream.on('pause', onPause)
    stream.on('resume', onResume)
    // (client time, bytes) samples; the first is the newest at least a window old.
    const first = { at: 0, bytes: source.bytesReceived() }
    const samples = [first]
    let lastBytes = first.bytes
    let lastProgressAt = 0
    const stop = (): void => {
      clearInterval(timer)
      stream.off('pause', onPause)
      stream.off('resume', onResume)
    }
    const fail = (message: string): void => {
      stop()
      onTooSlow(new GatewayError('GW_TOO_SLOW', message))
    }
    const timer = setInterval(() => {
      if (source.complete()) return stop()
      const now = Date.now()
      if (heldSince !== null) heldMs += now - Math.max(heldSince, last)
      // A tick much later than due means the process itself stalled (a busy CPU, a long GC) and
      // read nothing meanwhile: that time is not the client's either.
      clientMs += Math.min(now - last - heldMs, 2 * this.#tickMs)
      heldMs = 0
      last = now
      const bytes = source.bytesReceived()
      if (bytes > lastBytes) {
        lastBytes = bytes
        lastProgressAt = clientMs
      }
      if (clientMs - lastProgressAt >= idleTimeoutMs) return fail(`the client sent nothing for ${idleTimeoutMs} ms`)
      if (minBytesPerSecond === 0) return
      const newest = samples[samples.length - 1] as { at: number; bytes: number }
      if (clientMs - newest.at >= this.#tickMs / 2) samples.push({ at: clientMs, bytes })
      while (samples.length > 1 && (samples[1] as { at: number }).at <= clientMs - windowMs) samples.shift()
      const base = samples[0] as { at: number; bytes: number }
      const needed = (minBytesPerSecond * windowMs) / 1000
      if (clientMs - base.at >= windowMs && bytes - base.bytes < needed) {
        fail(`the client sent ${bytes - base.bytes} bytes in ${windowMs} ms, less than the minimum of ${minBytesPerSecond} bytes per second`)
      }
    }, this.#tickMs)
    return stop
  }
}
