import type { Readable } from 'node:stream'
import { instream } from '../../src/adapters/scanner/clamd-instream.ts'
import { parseClamdEndpoint } from '../../src/config/clamd-endpoints.ts'
import { forEachLimit, range, secondsSince } from './stats.ts'

export interface RawScanResult {
  seconds: number
  files: number
  bytes: number
  filesPerSecond: number
  mbPerSecond: number
  /** Files clamd did not answer clean. */
  failures: number
}

/**
 * The baseline of the scan scenarios: INSTREAM straight to clamd with the gateway's own client
 * (so the difference is the pipeline around it, not the client), `concurrency` at once.
 */
export async function rawScan(clamdUrl: string, count: number, open: (i: number) => Readable, concurrency: number): Promise<RawScanResult> {
  let bytes = 0
  let failures = 0
  const started = performance.now()
  const endpoint = parseClamdEndpoint(clamdUrl)
  await forEachLimit(range(count), concurrency, async (i) => {
    try {
      const result = await instream(endpoint, open(i), { connectTimeoutMs: 5000, idleTimeoutMs: 60_000, totalTimeoutMs: 600_000 })
      bytes += result.bytes
      if (result.outcome.result !== 'clean') failures++
    } catch {
      failures++
    }
  })
  const seconds = secondsSince(started)
  return { seconds, files: count, bytes, filesPerSecond: (count - failures) / seconds, mbPerSecond: bytes / 1e6 / seconds, failures }
}
