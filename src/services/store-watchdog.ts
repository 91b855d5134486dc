import type { StreamMeter } from './stream-meter.ts'

/**
 * Aborts a put whose store makes no progress for timeoutMs: bytes wait in the meter that the
 * store does not take, or the body has ended and the store has not finished. Time the gateway
 * spends waiting for the client (nothing buffered, body not ended) is not counted: that is the
 * client's idle timeout. The store reports progress of its own (a part stored) through progress():
 * under many concurrent uploads a slow S3 may hold a full part buffer for a long time, yet it is
 * not hung while parts keep completing.
 */
export function watchStore(meter: StreamMeter, timeoutMs: number, onStalled: () => void): { stop(): void; progress(): void; hold(held: boolean): void } {
  let taken = -1
  let lastProgress = Date.now()
  let held = false
  const timer = setInterval(
    () => {
      const now = Date.now()
      // Waiting for memory other puts hold (they are watched themselves): not this store's silence.
      if (held) {
        lastProgress = now
        return
      }
      const nowTaken = meter.bytes - meter.readableLength
      const waitingForStore = meter.readableLength > 0 || meter.writableLength > 0 || meter.writableEnded
      if (nowTaken !== taken || !waitingForStore) {
        taken = nowTaken
        lastProgress = now
      } else if (now - lastProgress >= timeoutMs) {
        clearInterval(timer)
        onStalled()
      }
    },
    Math.max(10, Math.min(1000, Math.floor(timeoutMs / 4)))
  )
  timer.unref()
  return {
    stop: () => clearInterval(timer),
    progress: () => {
      lastProgress = Date.now()
    },
    hold: (waiting) => {
      held = waiting
      lastProgress = Date.now()
    }
  }
}
