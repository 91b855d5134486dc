import { createHash } from 'node:crypto'
import type { Readable } from 'node:stream'
import { GetObjectCommand, GetObjectTaggingCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3'

export function sha256(data: Buffer | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

/** Every key in the bucket (all pages). */
export async function listKeys(s3: S3Client, Bucket: string): Promise<string[]> {
  const keys: string[] = []
  let ContinuationToken: string | undefined
  do {
    const out = await s3.send(new ListObjectsV2Command({ Bucket, ContinuationToken }))
    for (const o of out.Contents ?? []) if (o.Key !== undefined) keys.push(o.Key)
    ContinuationToken = out.IsTruncated ? out.NextContinuationToken : undefined
  } while (ContinuationToken)
  return keys
}

/** SHA-256 of the object's bytes as stored, streamed (not buffered); null when it does not exist. */
export async function objectSha256(s3: S3Client, Bucket: string, Key: string): Promise<string | null> {
  let body: Readable
  try {
    body = (await s3.send(new GetObjectCommand({ Bucket, Key }))).Body as Readable
  } catch (err) {
    if ((err as { name?: string }).name === 'NoSuchKey') return null
    throw err
  }
  const hash = createHash('sha256')
  for await (const chunk of body) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

export async function objectTags(s3: S3Client, Bucket: string, Key: string): Promise<Record<string, string>> {
  const out = await s3.send(new GetObjectTaggingCommand({ Bucket, Key }))
  return Object.fromEntries((out.TagSet ?? []).map((tag) => [tag.Key ?? '', tag.Value ?? '']))
}
