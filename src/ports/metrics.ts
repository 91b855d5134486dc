/** How an upload request ended, as counted by /metrics. */
export type UploadOutcome = 'accepted' | 'refused' | 'aborted' | 'too_slow' | 'busy' | 'unavailable' | 'error'

/** What happened to bytes streamed into quarantine: kept with a committed upload, or removed. */
export type BytesOutcome = 'stored' | 'discarded'

export type ScanOutcome = 'clean' | 'infected' | 'unscannable' | 'error'

export type PromotionOutcome = 'promoted' | 'changed' | 'error'

/** The events services report; gauges (queue depth, clamd health) are read by the adapter when scraped. */
export interface Metrics {
  uploadEnded(outcome: UploadOutcome): void
  uploadBytes(outcome: BytesOutcome, bytes: number): void
  scanEnded(outcome: ScanOutcome, seconds: number): void
  promotionEnded(outcome: PromotionOutcome): void
}
