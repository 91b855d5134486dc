import { nextRescanAt } from '../domain/upload-state.ts'

export interface RescanPolicyOptions {
  intervalMs: number
  /** Part of the interval taken off at random, 0..1. */
  jitter: number
}

/**
 * When a stored object is scanned again. Released uploads are too: the operator decided on one
 * verdict, and a later, different one must be able to take them out of production.
 */
export class RescanPolicy {
  readonly intervalMs: number
  readonly #jitter: number

  constructor(options: RescanPolicyOptions) {
    this.intervalMs = options.intervalMs
    this.#jitter = options.jitter
  }

  /** The next rolling rescan of an upload that is clean in production as of `scannedAt`. */
  next(scannedAt: number): number {
    return nextRescanAt(scannedAt, this.intervalMs, this.#jitter)
  }
}
