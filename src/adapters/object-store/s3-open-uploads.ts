import { AbortMultipartUploadCommand, ListMultipartUploadsCommand, type S3Client } from '@aws-sdk/client-s3'
import type { OpenUpload, OpenUploadPage } from '../../ports/object-store.ts'
import { statusOf, toStoreError } from './s3-errors.ts'

/** A page of a bucket's unfinished multipart uploads (what the orphan sweeper looks through). */
export async function listOpenUploads(client: S3Client, Bucket: string, prefix: string, continuationToken: string | null, limit: number): Promise<OpenUploadPage> {
  // ListMultipartUploads pages by (key, upload id) markers: both go into one opaque token.
  const marker = continuationToken ? (JSON.parse(continuationToken) as { k: string; u: string }) : null
  try {
    const out = await client.send(
      new ListMultipartUploadsCommand({
        Bucket,
        Prefix: prefix || undefined,
        MaxUploads: limit,
        ...(marker ? { KeyMarker: marker.k, UploadIdMarker: marker.u } : {})
      })
    )
    const uploads = (out.Uploads ?? [])
      .filter((u) => u.Key && u.UploadId)
      .map((u) => ({ key: u.Key as string, uploadId: u.UploadId as string, startedAt: u.Initiated?.getTime() ?? 0 }))
    const next = out.IsTruncated && out.NextKeyMarker ? JSON.stringify({ k: out.NextKeyMarker, u: out.NextUploadIdMarker ?? '' }) : null
    return { uploads, nextToken: next }
  } catch (err) {
    throw toStoreError(err, `list multipart uploads ${Bucket}/${prefix}`)
  }
}

/** Aborts one multipart upload; one that is already gone is not an error. */
export async function abortOpenUpload(client: S3Client, Bucket: string, upload: Pick<OpenUpload, 'key' | 'uploadId'>): Promise<void> {
  try {
    await client.send(new AbortMultipartUploadCommand({ Bucket, Key: upload.key, UploadId: upload.uploadId }))
  } catch (err) {
    if (statusOf(err) !== 404 && (err as { name?: string }).name !== 'NoSuchUpload') throw toStoreError(err, `abort multipart upload ${Bucket}/${upload.key}`)
  }
}
