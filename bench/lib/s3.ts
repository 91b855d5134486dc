import { DeleteObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import type { Readable } from 'node:stream'
import { forEachLimit } from './stats.ts'

/** The direct baseline: what a client would do without the gateway (lib-storage, same part settings). */
export async function directUpload(client: S3Client, bucket: string, key: string, body: Readable, partSize: number, queueSize: number): Promise<void> {
  await new Upload({ client, params: { Bucket: bucket, Key: key, Body: body }, partSize, queueSize, leavePartsOnError: false }).done()
}

/**
 * Deletes every object in the bucket. moto keeps what it stores (in memory, or spooled to /tmp
 * above 5 MiB), so each scenario removes what it wrote before the next one runs.
 */
export async function emptyBucket(client: S3Client, bucket: string): Promise<number> {
  let deleted = 0
  for (;;) {
    const out = await client.send(new ListObjectsV2Command({ Bucket: bucket, MaxKeys: 1000 }))
    const keys = (out.Contents ?? []).map((o) => o.Key).filter((k): k is string => k !== undefined)
    if (keys.length === 0) return deleted
    await forEachLimit(keys, 16, async (Key) => {
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key }))
    })
    deleted += keys.length
  }
}
