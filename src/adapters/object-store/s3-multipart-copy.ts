import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  UploadPartCopyCommand,
  type CompletedPart,
  type S3Client
} from '@aws-sdk/client-s3'

export interface MultipartCopyInput {
  client: S3Client
  /** URL-encoded `bucket/key` of the source, as CopySource expects it. */
  copySource: string
  /** The source's ETag: every part is copied from this exact version, or the copy fails. */
  sourceETag: string | undefined
  size: number
  bucket: string
  key: string
  contentType: string | undefined
  contentDisposition: string | undefined
  metadata: Record<string, string> | undefined
  /** URL-encoded tag set for the new object. */
  tagging: string
  partSizeBytes: number
  concurrency: number
}

const MAX_PARTS = 10_000

/**
 * CopyObject stops at 5 GiB; above that S3 only copies in parts (UploadPartCopy).
 * Content type, metadata and tags are not copied by UploadPartCopy, so they are set on the new upload.
 * On any failure the multipart upload is aborted so no parts are left behind.
 */
export async function multipartCopy(input: MultipartCopyInput): Promise<void> {
  const { client, bucket, key } = input
  const created = await client.send(
    new CreateMultipartUploadCommand({
      Bucket: bucket,
      Key: key,
      ContentType: input.contentType,
      ContentDisposition: input.contentDisposition,
      Metadata: input.metadata,
      Tagging: input.tagging
    })
  )
  const UploadId = created.UploadId
  if (!UploadId) throw new Error(`CreateMultipartUpload for ${bucket}/${key} returned no UploadId`)
  try {
    const Parts = await copyParts(input, UploadId)
    await client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId, MultipartUpload: { Parts } }))
  } catch (err) {
    // A failed abort is left to the bucket's lifecycle rule for incomplete uploads.
    await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId })).catch(() => undefined)
    throw err
  }
}

async function copyParts(input: MultipartCopyInput, UploadId: string): Promise<CompletedPart[]> {
  const partSize = Math.max(input.partSizeBytes, Math.ceil(input.size / MAX_PARTS))
  const count = Math.ceil(input.size / partSize)
  const parts: CompletedPart[] = []
  let next = 0
  let failed = false

  const worker = async (): Promise<void> => {
    while (!failed && next < count) {
      const index = next++
      const start = index * partSize
      const end = Math.min(start + partSize, input.size) - 1
      try {
        const out = await input.client.send(
          new UploadPartCopyCommand({
            Bucket: input.bucket,
            Key: input.key,
            UploadId,
            PartNumber: index + 1,
            CopySource: input.copySource,
            CopySourceIfMatch: input.sourceETag,
            CopySourceRange: `bytes=${start}-${end}`
          })
        )
        const ETag = out.CopyPartResult?.ETag
        if (!ETag) throw new Error(`UploadPartCopy of part ${index + 1} returned no ETag`)
        parts[index] = { PartNumber: index + 1, ETag }
      } catch (err) {
        failed = true
        throw err
      }
    }
  }

  // allSettled, not all: abort only once no part copy is still running, or a late part would survive the abort.
  const workers = Array.from({ length: Math.min(input.concurrency, count) }, worker)
  const results = await Promise.allSettled(workers)
  const rejected = results.find((r) => r.status === 'rejected')
  if (rejected) throw rejected.reason
  return parts
}
