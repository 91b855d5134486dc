import type { Readable } from 'node:stream'
import { AbortMultipartUploadCommand, DeleteObjectCommand, type S3Client } from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import type { PutOptions } from '../../ports/object-store.ts'
import { abortError } from './abort-error.ts'
import { guardBody } from './body-guard.ts'
import { toStoreError } from './s3-errors.ts'

export interface StreamPut {
  client: S3Client
  bucket: string
  key: string
  body: Readable
  options: PutOptions
  /** lib-storage holds about partSize × (queueSize + 1) bytes of a put in memory. */
  partSize: number
  queueSize: number
}

/**
 * Streams a body into one object with lib-storage's multipart Upload. A put that fails or is
 * aborted leaves neither a part nor an object behind (or the orphan sweeper finds what is left).
 */
export async function streamPut({ client, bucket: Bucket, key, body, options, partSize, queueSize }: StreamPut): Promise<void> {
  const { signal } = options
  const guarded = guardBody(body)
  if (signal?.aborted) {
    guarded.release()
    throw abortError(signal)
  }
  // lib-storage's own abort() rejects before the multipart upload is aborted and leaves a stalled
  // body unread; ending the stream it reads instead makes Upload fail, abort the upload, then reject.
  const onAbort = (): void => {
    guarded.stream.destroy(abortError(signal as AbortSignal))
    guarded.release()
  }
  signal?.addEventListener('abort', onAbort, { once: true })
  const upload = new Upload({
    client,
    params: { Bucket, Key: key, Body: guarded.stream, ContentType: options.contentType, Metadata: options.metadata },
    partSize,
    queueSize,
    leavePartsOnError: false
  })
  if (options.onProgress) upload.on('httpUploadProgress', options.onProgress)
  try {
    await upload.done()
  } catch (err) {
    const bodyFailure = guarded.failure()
    guarded.release()
    // Upload aborts on failure itself; this catches the case where that abort request failed.
    // Usually already aborted (NoSuchUpload); if S3 is unreachable the orphan sweeper aborts it later.
    if (upload.uploadId !== undefined) await client.send(new AbortMultipartUploadCommand({ Bucket, Key: key, UploadId: upload.uploadId })).catch(() => undefined)
    if (signal?.aborted) throw abortError(signal)
    if (bodyFailure !== undefined) throw bodyFailure
    throw toStoreError(err, `put ${Bucket}/${key}`)
  } finally {
    signal?.removeEventListener('abort', onAbort)
  }
  // Aborted while the last request was in flight: the caller treats the put as failed, so remove it.
  if (signal?.aborted) {
    await client.send(new DeleteObjectCommand({ Bucket, Key: key })).catch(() => undefined)
    throw abortError(signal)
  }
}
