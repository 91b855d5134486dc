import type { Log } from '../ports/log.ts'
import type { RescanStore } from '../ports/rescan-store.ts'
import { BackgroundLoop } from './background-loop.ts'

/**
 * Carries big rescans forward a batch at a time: covering the uploads a rescan selects (it lists
 * until the last batch) and unwinding the ones a cancelled rescan left. Each batch is one short
 * transaction, so millions of uploads never make one statement outlive the statement timeout.
 */
export class RescanBatches extends BackgroundLoop {
  readonly #rescanStore: RescanStore
  readonly #intervalMs: number

  constructor(deps: { rescanStore: RescanStore; log: Log }, options: { intervalMs: number; pollIntervalMs: number }) {
    super(deps.log, options.pollIntervalMs, 'rescan batch failed; it is retried from its saved position')
    this.#rescanStore = deps.rescanStore
    this.#intervalMs = options.intervalMs
  }

  /** One batch; true while some are left. */
  runOnce(): Promise<boolean> {
    return this.#rescanStore.advanceRescans(Date.now(), this.#intervalMs)
  }
}
