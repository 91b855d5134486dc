import type { Metrics } from '../../src/ports/metrics.ts'

/** Keeps every metrics event, for tests that check what a service reported. */
export class RecordingMetrics implements Metrics {
  readonly events: string[] = []
  uploadEnded(outcome: string): void {
    this.events.push(`upload:${outcome}`)
  }
  uploadBytes(outcome: string, bytes: number): void {
    this.events.push(`bytes:${outcome}:${bytes}`)
  }
  scanEnded(outcome: string): void {
    this.events.push(`scan:${outcome}`)
  }
  promotionEnded(outcome: string): void {
    this.events.push(`promotion:${outcome}`)
  }
}
