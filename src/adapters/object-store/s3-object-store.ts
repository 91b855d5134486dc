import { addAbortSignal, Readable } from 'node:stream'
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  ListObjectsV2Command,
  GetObjectCommand,
  GetObjectTaggingCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  PutObjectTaggingCommand,
  S3Client,
  type HeadObjectCommandOutput
} from '@aws-sdk/client-s3'
import {
  ObjectChangedError,
  ObjectNotFoundError,
  type Area,
  type ObjectPage,
  type OpenUploadPage,
  type OpenUpload,
  type AreaHealth,
  type CopyOptions,
  type ObjectInfo,
  type ObjectLocation,
  type ObjectStore,
  type PutOptions
} from '../../ports/object-store.ts'
import { abortError } from './abort-error.ts'
import { describeBucketError, isMissingObject, statusOf, toStoreError } from './s3-errors.ts'
import { PartBufferPool } from './part-buffer-pool.ts'
import { multipartCopy } from './s3-multipart-copy.ts'
import { abortOpenUpload, listOpenUploads } from './s3-open-uploads.ts'
import { streamPut } from './s3-stream-put.ts'
import { encodeTagging, sanitizeTags } from './tags.ts'

export interface S3ObjectStoreOptions {
  /** For S3-compatible servers (MinIO, moto, ...); the SDK's regional endpoint when absent. */
  endpoint?: string
  region: string
  forcePathStyle: boolean
  quarantineBucket: string
  productionBucket: string
  /** Static credentials; the SDK's default provider chain when absent. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string }
  /** Upload part size (min 5 MiB, default 8 MiB): the size of each buffer of the part buffer pool. */
  partSizeBytes?: number
  /** Parts uploaded in parallel per put (default 4), each holding a pool buffer, and one more filling; also the parallelism of a multipart copy. */
  queueSize?: number
  /**
   * The part buffer pool every put of this store shares (default 128 MiB, and at least one part):
   * all puts together never hold more, a put that finds no free buffer waits for one.
   */
  bufferPoolBytes?: number
  /** Objects larger than this are copied with UploadPartCopy (default 5 GiB, the CopyObject limit). */
  multipartCopyThresholdBytes?: number
  /** Part size for a multipart copy (default 512 MiB, raised when needed to stay within 10,000 parts). */
  copyPartSizeBytes?: number
  /** Time allowed to open a TCP connection (default 5 s). */
  connectionTimeoutMs?: number
  /**
   * Idle time allowed on a socket (default 60 s). Idle, not total: a large object streamed to a
   * slow reader may take far longer than any sensible total limit.
   */
  idleTimeoutMs?: number
  /** Upper bound for check() (default 5 s), so /readyz answers even when S3 hangs. */
  checkTimeoutMs?: number
}

const MiB = 1024 * 1024
const GiB = 1024 * MiB
const MIN_PART_SIZE = 5 * MiB
const DEFAULT_CONTENT_TYPE = 'application/octet-stream'
const AREAS: readonly Area[] = ['quarantine', 'production']

export class S3ObjectStore implements ObjectStore {
  /** Exposed for presigning and for tests that inject faults with middleware. */
  readonly client: S3Client
  readonly #buckets: Record<Area, string>
  readonly #partSize: number
  readonly #queueSize: number
  readonly #pool: PartBufferPool
  readonly #copyThreshold: number
  readonly #copyPartSize: number
  readonly #checkTimeoutMs: number

  constructor(options: S3ObjectStoreOptions) {
    this.#partSize = options.partSizeBytes ?? 8 * MiB
    if (this.#partSize < MIN_PART_SIZE) throw new RangeError('partSizeBytes must be at least 5 MiB (the S3 minimum)')
    this.#queueSize = options.queueSize ?? 4
    this.#pool = new PartBufferPool(this.#partSize, Math.max(1, Math.floor((options.bufferPoolBytes ?? 128 * MiB) / this.#partSize)))
    this.#copyThreshold = options.multipartCopyThresholdBytes ?? 5 * GiB
    this.#copyPartSize = Math.max(options.copyPartSizeBytes ?? 512 * MiB, MIN_PART_SIZE)
    this.#checkTimeoutMs = options.checkTimeoutMs ?? 5000
    this.#buckets = { quarantine: options.quarantineBucket, production: options.productionBucket }
    this.client = new S3Client({
      endpoint: options.endpoint,
      region: options.region,
      forcePathStyle: options.forcePathStyle,
      credentials: options.credentials,
      // The newer default checksum headers are rejected by many S3-compatible servers.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        connectionTimeout: options.connectionTimeoutMs ?? 5000,
        socketTimeout: options.idleTimeoutMs ?? 60_000
      }
    })
  }

  get bufferedBytes(): number {
    return this.#pool.taken * this.#pool.bufferBytes
  }

  /** The pool's figures, for tests: buffers handed out now, and buffers that exist. */
  get poolUsage(): { taken: number; allocated: number; capacity: number } {
    return { taken: this.#pool.taken, allocated: this.#pool.allocated, capacity: this.#pool.capacity }
  }

  location(area: Area, key: string): ObjectLocation {
    return { bucket: this.#buckets[area], key }
  }

  async put(area: Area, key: string, body: Readable, options: PutOptions): Promise<void> {
    await streamPut({ client: this.client, bucket: this.#buckets[area], key, body, options, pool: this.#pool, queueSize: this.#queueSize })
  }

  async get(area: Area, key: string, signal?: AbortSignal): Promise<{ body: Readable; info: ObjectInfo }> {
    const Bucket = this.#buckets[area]
    const out = await this.client
      .send(new GetObjectCommand({ Bucket, Key: key }), { abortSignal: signal })
      .catch((err: unknown) => {
        if (signal?.aborted) throw abortError(signal)
        return this.#fail(err, area, key, 'get')
      })
    const body = out.Body
    if (!(body instanceof Readable)) throw new Error(`get ${Bucket}/${key}: the SDK returned no Node stream`)
    if (signal) addAbortSignal(signal, body)
    return { body, info: infoOf(out) }
  }

  async head(area: Area, key: string): Promise<ObjectInfo | null> {
    const out = await this.#head(area, key)
    return out && infoOf(out)
  }

  async #head(area: Area, key: string): Promise<HeadObjectCommandOutput | null> {
    try {
      return await this.client.send(new HeadObjectCommand({ Bucket: this.#buckets[area], Key: key }))
    } catch (err) {
      if (isMissingObject(err)) return null
      throw toStoreError(err, `head ${this.#buckets[area]}/${key}`)
    }
  }

  async copy(from: Area, to: Area, key: string, tags: Record<string, string>, options: CopyOptions = {}): Promise<void> {
    const tagging = encodeTagging(sanitizeTags(tags))
    // The caller's fresh read of the version it copies saves a HEAD: S3 still checks that version
    // (CopySourceIfMatch) and answers NoSuchKey for a source that is gone.
    const known = options.source !== undefined && options.ifVersion !== undefined && options.source.version === options.ifVersion ? options.source : null
    const source = known
      ? { ETag: known.version, ContentLength: known.size, ContentType: known.contentType, ContentDisposition: known.contentDisposition, Metadata: known.metadata }
      : await this.#head(from, key)
    if (!source) throw new ObjectNotFoundError(from, key)
    // Checked here and again by S3 itself (CopySourceIfMatch), so a change in between is caught too.
    if (options.ifVersion !== undefined && source.ETag !== options.ifVersion) throw new ObjectChangedError(from, key)
    const Bucket = this.#buckets[to]
    const copySource = `${encodeURIComponent(this.#buckets[from])}/${key.split('/').map(encodeURIComponent).join('/')}`
    const size = source.ContentLength ?? 0
    options.signal?.throwIfAborted()
    try {
      if (size > this.#copyThreshold) {
        await multipartCopy({
          client: this.client,
          copySource,
          sourceETag: options.ifVersion ?? source.ETag,
          size,
          bucket: Bucket,
          key,
          contentType: options.contentType ?? source.ContentType,
          contentDisposition: options.contentType === undefined ? source.ContentDisposition : options.contentDisposition,
          metadata: source.Metadata,
          tagging,
          partSizeBytes: this.#copyPartSize,
          concurrency: this.#queueSize
        })
      } else {
        await this.client.send(
          new CopyObjectCommand({
            Bucket,
            Key: key,
            CopySource: copySource,
            ...(options.ifVersion !== undefined ? { CopySourceIfMatch: options.ifVersion } : {}),
            // A new content type needs REPLACE, which drops what is not given again: the metadata is.
            ...(options.contentType === undefined
              ? { MetadataDirective: 'COPY' }
              : { MetadataDirective: 'REPLACE', ContentType: options.contentType, ContentDisposition: options.contentDisposition, Metadata: source.Metadata }),
            // Tags have their own directive: they are the ones given, whatever the metadata.
            TaggingDirective: 'REPLACE',
            Tagging: tagging
          }),
          { abortSignal: options.signal }
        )
      }
    } catch (err) {
      if (statusOf(err) === 412) throw new ObjectChangedError(from, key)
      this.#fail(err, from, key, `copy to ${Bucket}`)
    }
  }

  async setTags(area: Area, key: string, tags: Record<string, string>, options: { signal?: AbortSignal } = {}): Promise<void> {
    const TagSet = Object.entries(sanitizeTags(tags)).map(([Key, Value]) => ({ Key, Value }))
    options.signal?.throwIfAborted()
    await this.client
      .send(new PutObjectTaggingCommand({ Bucket: this.#buckets[area], Key: key, Tagging: { TagSet } }), { abortSignal: options.signal })
      .catch((err: unknown) => this.#fail(err, area, key, 'setTags'))
  }

  async getTags(area: Area, key: string): Promise<Record<string, string>> {
    const out = await this.client
      .send(new GetObjectTaggingCommand({ Bucket: this.#buckets[area], Key: key }))
      .catch((err: unknown) => this.#fail(err, area, key, 'getTags'))
    return Object.fromEntries((out.TagSet ?? []).map((t) => [t.Key ?? '', t.Value ?? '']))
  }

  async list(area: Area, prefix: string, continuationToken: string | null, limit: number): Promise<ObjectPage> {
    const Bucket = this.#buckets[area]
    try {
      const out = await this.client.send(
        new ListObjectsV2Command({ Bucket, Prefix: prefix || undefined, MaxKeys: limit, ...(continuationToken ? { ContinuationToken: continuationToken } : {}) })
      )
      const objects = (out.Contents ?? []).filter((o) => o.Key).map((o) => ({ key: o.Key as string, size: o.Size ?? 0, modifiedAt: o.LastModified?.getTime() ?? 0 }))
      return { objects, nextToken: out.IsTruncated && out.NextContinuationToken ? out.NextContinuationToken : null }
    } catch (err) {
      throw toStoreError(err, `list ${Bucket}/${prefix}`)
    }
  }

  async delete(area: Area, key: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    options.signal?.throwIfAborted()
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.#buckets[area], Key: key }), { abortSignal: options.signal })
    } catch (err) {
      // S3 answers 204 for a missing key; some compatible servers answer 404.
      if (!isMissingObject(err)) throw toStoreError(err, `delete ${this.#buckets[area]}/${key}`)
    }
  }

  listOpenUploads(area: Area, prefix: string, continuationToken: string | null, limit: number): Promise<OpenUploadPage> {
    return listOpenUploads(this.client, this.#buckets[area], prefix, continuationToken, limit)
  }

  abortOpenUpload(area: Area, upload: Pick<OpenUpload, 'key' | 'uploadId'>): Promise<void> {
    return abortOpenUpload(this.client, this.#buckets[area], upload)
  }

  async check(): Promise<AreaHealth[]> {
    return Promise.all(AREAS.map((area) => this.#checkBucket(area)))
  }

  async #checkBucket(area: Area): Promise<AreaHealth> {
    const Bucket = this.#buckets[area]
    try {
      await this.client.send(new HeadBucketCommand({ Bucket }), {
        abortSignal: AbortSignal.timeout(this.#checkTimeoutMs)
      })
      return { area, ok: true }
    } catch (err) {
      return { area, ok: false, detail: describeBucketError(Bucket, err, this.#checkTimeoutMs) }
    }
  }

  async close(): Promise<void> {
    this.client.destroy()
  }

  #fail(err: unknown, area: Area, key: string, op: string): never {
    if (isMissingObject(err)) throw new ObjectNotFoundError(area, key)
    throw toStoreError(err, `${op} ${this.#buckets[area]}/${key}`)
  }
}

function infoOf(out: { ContentLength?: number; ContentType?: string; ContentDisposition?: string; Metadata?: Record<string, string>; ETag?: string }): ObjectInfo {
  const disposition = out.ContentDisposition === undefined ? {} : { contentDisposition: out.ContentDisposition }
  return { size: out.ContentLength ?? 0, version: out.ETag ?? '', contentType: out.ContentType ?? DEFAULT_CONTENT_TYPE, metadata: out.Metadata ?? {}, ...disposition }
}
