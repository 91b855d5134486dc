import type { Readable } from 'node:stream'
import { instream } from '../../src/adapters/scanner/clamd-instream.ts'
import { parseClamdEndpoint } from '../../src/config/clamd-endpoints.ts'
import { forEachLimit, range, secondsSince } from './stats.ts'

/** What a baseline scan loop did: the raw scan, the direct pipeline, GET → INSTREAM. */
export interface ScanRunResult {
  seconds: number
  files: number
  bytes: number
  filesPerSecond: number
  mbPerSecond: number
  /** Files not clean, or whose scan (or store request) failed. */
  failures: number
}

/** The baselines' INSTREAM bounds: generous, they are not what is measured. */
export const INSTREAM_OPTIONS = { connectTimeoutMs: 5000, idleTimeoutMs: 60_000, totalTimeoutMs: 600_000 }

/** The figures of a loop over `files` files that started at `started` (performance.now()). */
export function scanRunResult(files: number, bytes: number, failures: number, started: number): ScanRunResult {
  const seconds = secondsSince(started)
  return { seconds, files, bytes, filesPerSecond: (files - failures) / seconds, mbPerSecond: bytes / 1e6 / seconds, failures }
}

/**
 * The baseline of the scan scenarios: INSTREAM straight to clamd with the gateway's own client
 * (so the difference is the pipeline around it, not the client), `concurrency` at once.
 */
export async function rawScan(clamdUrl: string, count: number, open: (i: number) => Readable, concurrency: number): Promise<ScanRunResult> {
  let bytes = 0
  let failures = 0
  const started = performance.now()
  const endpoint = parseClamdEndpoint(clamdUrl)
  await forEachLimit(range(count), concurrency, async (i) => {
    try {
      const result = await instream(endpoint, open(i), INSTREAM_OPTIONS)
      bytes += result.bytes
      if (result.outcome.result !== 'clean') failures++
    } catch {
      failures++
    }
  })
  return scanRunResult(count, bytes, failures, started)
}
