import { finished, type Readable } from 'node:stream'
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client
} from '@aws-sdk/client-s3'
import type { PutOptions } from '../../ports/object-store.ts'
import { abortError } from './abort-error.ts'
import { guardBody } from './body-guard.ts'
import type { PartBufferPool } from './part-buffer-pool.ts'
import { toStoreError } from './s3-errors.ts'

export interface StreamPut {
  client: S3Client
  bucket: string
  key: string
  body: Readable
  options: PutOptions
  /** Part buffers shared by every put of the process; a part is one buffer (its size is the part size). */
  pool: PartBufferPool
  /** Parts of this put sent at once; one more may be filling meanwhile. */
  queueSize: number
}

/**
 * Streams a body into one object: PutObject when it fits in one part buffer, else a multipart upload
 * whose parts are sent straight from pool buffers (no copy besides the one into the buffer). Written
 * by hand rather than with lib-storage's Upload, which allocates and concatenates each part of its own
 * (memory no process-wide bound can hold, and garbage). A put that fails or is aborted leaves neither
 * a part nor an object behind (or the orphan sweeper finds what is left).
 */
export async function streamPut({ client, bucket: Bucket, key: Key, body, options, pool, queueSize }: StreamPut): Promise<void> {
  const { signal } = options
  const guarded = guardBody(body)
  if (signal?.aborted) {
    guarded.release()
    throw abortError(signal)
  }
  // Stops every wait of this put (a buffer, a part slot) when the caller aborts or a part fails.
  const stop = new AbortController()
  // Ending the stream read here also ends a wait for a body that stalls.
  const onAbort = (): void => {
    stop.abort(signal?.reason)
    guarded.stream.destroy(abortError(signal as AbortSignal))
    guarded.release()
  }
  signal?.addEventListener('abort', onAbort, { once: true })
  // A body that fails while this put waits for a buffer (a refused type, a size limit, the client
  // gone) ends the wait at once rather than when some other put gives a buffer back.
  finished(guarded.stream, (err) => {
    if (err) stop.abort(err)
  })
  const sending = new Set<Promise<void>>()
  // The store watchdog is held only while this put waits for a buffer with none of its own parts
  // in flight: then only other puts' buffers can free one. A part of its own in flight is watched.
  let waitingForBuffer = false
  let held = false
  const hold = (): void => {
    const now = waitingForBuffer && sending.size === 0
    if (now === held) return
    held = now
    options.onBufferWait?.(now)
  }
  const etags: string[] = []
  let uploadId: string | undefined
  let partFailure: unknown
  let buffer: Buffer | null = null
  let filled = 0
  const release = (): void => {
    if (buffer) pool.give(buffer)
    buffer = null
  }
  const sendPart = async (): Promise<void> => {
    uploadId ??= (await client.send(new CreateMultipartUploadCommand({ Bucket, Key, ContentType: options.contentType, Metadata: options.metadata }), { abortSignal: stop.signal })).UploadId
    while (sending.size >= queueSize) await untilAborted(Promise.race(sending), stop.signal)
    const part = buffer as Buffer
    const size = filled
    const partNumber = etags.length + 1
    etags.push('')
    buffer = null
    const sent = client
      .send(unsignedPayload(new UploadPartCommand({ Bucket, Key, UploadId: uploadId, PartNumber: partNumber, Body: part.subarray(0, size), ContentLength: size })), { abortSignal: stop.signal })
      .then(
        (out) => {
          etags[partNumber - 1] = out.ETag ?? ''
          options.onProgress?.()
        },
        (err: unknown) => {
          partFailure ??= err
          stop.abort(err)
          guarded.stream.destroy(err as Error)
        }
      )
      // The SDK reads the buffer until the request has settled: only then may another put fill it.
      .finally(() => {
        pool.give(part)
        sending.delete(sent)
        hold()
      })
    sending.add(sent)
  }
  try {
    for await (const chunk of guarded.stream as AsyncIterable<Buffer>) {
      let offset = 0
      while (offset < chunk.length) {
        if (!buffer) {
          buffer = await pool.take(stop.signal, (waiting) => {
            waitingForBuffer = waiting
            hold()
          })
          filled = 0
        }
        const copied = chunk.copy(buffer, filled, offset)
        filled += copied
        offset += copied
        if (filled === buffer.length) await sendPart()
      }
    }
    if (uploadId === undefined && etags.length === 0) {
      const data = buffer ? buffer.subarray(0, filled) : Buffer.alloc(0)
      await client.send(unsignedPayload(new PutObjectCommand({ Bucket, Key, Body: data, ContentLength: data.length, ContentType: options.contentType, Metadata: options.metadata })), {
        abortSignal: stop.signal
      })
      release()
      options.onProgress?.()
    } else {
      if (buffer && filled > 0) await sendPart()
      release()
      while (sending.size > 0) await Promise.race(sending)
      if (partFailure !== undefined) throw partFailure
      await client.send(
        new CompleteMultipartUploadCommand({ Bucket, Key, UploadId: uploadId, MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) } }),
        { abortSignal: stop.signal }
      )
    }
  } catch (err) {
    const bodyFailure = guarded.failure()
    guarded.release()
    stop.abort(err)
    // Aborted requests settle at once; their buffers go back to the pool only then.
    await Promise.allSettled([...sending])
    release()
    if (uploadId !== undefined) await client.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId: uploadId })).catch(() => undefined)
    if (signal?.aborted) throw abortError(signal)
    if (bodyFailure !== undefined) throw bodyFailure
    throw toStoreError(partFailure ?? err, `put ${Bucket}/${Key}`)
  } finally {
    signal?.removeEventListener('abort', onAbort)
  }
  // Aborted while the last request was in flight: the caller treats the put as failed, so remove it.
  if (signal?.aborted) {
    await client.send(new DeleteObjectCommand({ Bucket, Key })).catch(() => undefined)
    throw abortError(signal)
  }
}

/**
 * The body is not hashed for the signature: the gateway hashes every byte once already (the upload's
 * SHA-256, checked again by the scan before any promotion), and TLS protects it in transit on https.
 */
function unsignedPayload<T extends UploadPartCommand | PutObjectCommand>(command: T): T {
  // The same build step for both commands; typed as one of them.
  const stack = (command as unknown as UploadPartCommand).middlewareStack
  stack.add(
    (next) => async (args) => {
      const request = args.request as { headers?: Record<string, string> }
      if (request.headers) request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD'
      return next(args)
    },
    { step: 'build', name: 'gatewayUnsignedPayload' }
  )
  return command
}

/** `waiting`, or the signal's abort, whichever comes first. */
async function untilAborted(waiting: Promise<unknown>, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted()
  let onAbort!: () => void
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
  })
  try {
    await Promise.race([waiting, aborted])
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}
