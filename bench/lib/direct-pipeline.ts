import { CopyObjectCommand, DeleteObjectCommand, GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3'
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import { instream } from '../../src/adapters/scanner/clamd-instream.ts'
import { parseClamdEndpoint } from '../../src/config/clamd-endpoints.ts'
import { INSTREAM_OPTIONS, scanRunResult, type ScanRunResult } from './raw-clamd.ts'
import { forEachLimit } from './stats.ts'

/** Puts local files into the quarantine bucket under the given keys (not timed: the upload is not the pipeline). */
export async function seedQuarantine(s3: S3Client, bucket: string, paths: readonly string[], keys: readonly string[]): Promise<void> {
  await forEachLimit(paths, 8, async (path, i) => {
    const { size } = await stat(path)
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: keys[i], Body: createReadStream(path), ContentLength: size }))
  })
}

/**
 * Goal 1's baseline: per file exactly the unavoidable work of a scan pipeline, `concurrency` files
 * at once: GET from quarantine streamed into clamd INSTREAM (the gateway's own client, as the raw
 * baseline uses), then, once clean, CopyObject to production with the verdict's tags set in the
 * copy (TaggingDirective REPLACE), then DeleteObject from quarantine. No state store, no leases,
 * no polling, no HEAD: what any correct pipeline has to pay on the same moto and clamd.
 */
export async function directPipeline(
  s3: S3Client,
  clamdUrl: string,
  buckets: { quarantine: string; production: string },
  keys: readonly string[],
  concurrency: number
): Promise<ScanRunResult> {
  const endpoint = parseClamdEndpoint(clamdUrl)
  let bytes = 0
  let failures = 0
  const started = performance.now()
  await forEachLimit(keys, concurrency, async (Key) => {
    try {
      const got = await s3.send(new GetObjectCommand({ Bucket: buckets.quarantine, Key }))
      const scan = await instream(endpoint, got.Body as Readable, INSTREAM_OPTIONS)
      bytes += scan.bytes
      if (scan.outcome.result !== 'clean') {
        failures++
        return
      }
      const tags = new URLSearchParams({ 'av-status': 'clean', 'av-upload-id': Key, 'av-scanned-at': new Date().toISOString(), 'av-engine': 'ClamAV' })
      await s3.send(
        new CopyObjectCommand({
          Bucket: buckets.production,
          Key,
          CopySource: `${buckets.quarantine}/${encodeURIComponent(Key)}`,
          MetadataDirective: 'COPY',
          TaggingDirective: 'REPLACE',
          Tagging: tags.toString()
        })
      )
      await s3.send(new DeleteObjectCommand({ Bucket: buckets.quarantine, Key }))
    } catch {
      failures++
    }
  })
  return scanRunResult(keys.length, bytes, failures, started)
}

/**
 * Scenario 7's baseline (a rescan without promotion): GET each object and stream it into clamd
 * INSTREAM, `concurrency` at once, file i to clamdUrls[i % n] (spread evenly, as the gateway's pool does).
 */
export async function getAndScan(s3: S3Client, clamdUrls: readonly string[], bucket: string, keys: readonly string[], concurrency: number): Promise<ScanRunResult> {
  const endpoints = clamdUrls.map((url) => parseClamdEndpoint(url))
  let bytes = 0
  let failures = 0
  const started = performance.now()
  await forEachLimit(keys, concurrency, async (Key, i) => {
    try {
      const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key }))
      const scan = await instream(endpoints[i % endpoints.length] as (typeof endpoints)[number], got.Body as Readable, INSTREAM_OPTIONS)
      bytes += scan.bytes
      if (scan.outcome.result !== 'clean') failures++
    } catch {
      failures++
    }
  })
  return scanRunResult(keys.length, bytes, failures, started)
}
