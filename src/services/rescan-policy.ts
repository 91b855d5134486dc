import { nextRescanAt } from '../domain/upload-state.ts'
import type { UploadRecord } from '../ports/state-store.ts'

export interface RescanPolicyOptions {
  intervalMs: number
  /** Part of the interval taken off at random, 0..1. */
  jitter: number
}

/** When a stored object is scanned again. Released uploads are not: an operator decided on the record. */
export class RescanPolicy {
  readonly intervalMs: number
  readonly #jitter: number

  constructor(options: RescanPolicyOptions) {
    this.intervalMs = options.intervalMs
    this.#jitter = options.jitter
  }

  /** The next rolling rescan of an upload that is clean in production as of `scannedAt`. */
  next(upload: Pick<UploadRecord, 'released'>, scannedAt: number): number | null {
    return upload.released ? null : nextRescanAt(scannedAt, this.intervalMs, this.#jitter)
  }
}
