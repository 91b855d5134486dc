import type { Log } from '../ports/log.ts'
import type { HistoryPruning } from '../ports/history-store.ts'
import { BackgroundLoop } from './background-loop.ts'

/**
 * An upload token's use count goes this long after the token expired: well past the clock skew a
 * token is still accepted within, so no token can start uploads once its count is gone.
 */
const TOKEN_USES_KEPT_MS = 5 * 60_000

export interface RetentionOptions {
  /** Delivered events, scans and finished or cancelled rescans older than this go. */
  historyMs: number
  /** Audit rows older than this go; null: kept for ever. */
  auditMs: number | null
  pollIntervalMs: number
}

/**
 * Deletes old history in batches so tables stop growing for ever: delivered webhook events, scans,
 * finished or cancelled rescans and their items, expired upload tokens' use counts, and audit rows
 * when configured. Never an event
 * not delivered yet, nor anything a rescan that is still going needs (the store decides which).
 */
export class RetentionService extends BackgroundLoop {
  readonly #pruning: HistoryPruning
  readonly #options: RetentionOptions

  constructor(deps: { pruning: HistoryPruning; log: Log }, options: RetentionOptions) {
    super(deps.log, options.pollIntervalMs, 'pruning old history failed; retried later')
    this.#pruning = deps.pruning
    this.#options = options
  }

  /** One batch of each kind of old row; true while there may be more. */
  async runOnce(): Promise<boolean> {
    const now = Date.now()
    const { historyMs, auditMs } = this.#options
    const deleted = await this.#pruning.prune({ historyBefore: now - historyMs, auditBefore: auditMs === null ? null : now - auditMs, tokenUsesBefore: now - TOKEN_USES_KEPT_MS })
    if (deleted > 0) this.log.info({ deleted }, 'pruned old history')
    return deleted > 0
  }
}
