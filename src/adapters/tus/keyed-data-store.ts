import type { Readable } from 'node:stream'
import { DataStore, Upload } from '@tus/utils'

/**
 * A tus DataStore over @tus/s3-store or @tus/file-store that stores upload `<id>` under the
 * gateway's object key `<prefix><id>`, so the scanner and the promotion read the same object as
 * for a multipart upload. It offers no deferred length (Upload-Length is required) and reports
 * the expiry itself: the inner stores' own expiry sweeps (deleteExpired) are not used, because
 * they remove what is not theirs (@tus/s3-store aborts every multipart upload of the bucket older
 * than the expiry, @tus/file-store deletes completed files too). Expired uploads are removed by
 * the orphan sweeper, through their intents.
 */
export class KeyedDataStore extends DataStore {
  readonly #inner: DataStore
  readonly #prefix: string
  readonly #expiryMs: number

  constructor(inner: DataStore, options: { keyPrefix: string; expiryMs: number }) {
    super()
    this.#inner = inner
    this.#prefix = options.keyPrefix
    this.#expiryMs = options.expiryMs
    this.extensions = ['creation', 'creation-with-upload', 'termination', 'expiration']
  }

  #key(id: string): string {
    return `${this.#prefix}${id}`
  }

  #outside(upload: Upload, id: string): Upload {
    return new Upload({ ...upload, id })
  }

  override async create(upload: Upload): Promise<Upload> {
    const stored = await this.#inner.create(new Upload({ ...upload, id: this.#key(upload.id) }))
    // The server goes on with the object it passed in (its id names the upload URL).
    upload.creation_date = stored.creation_date
    upload.storage = stored.storage
    return upload
  }

  override remove(id: string): Promise<void> {
    return this.#inner.remove(this.#key(id))
  }

  override write(stream: Readable, id: string, offset: number): Promise<number> {
    return this.#inner.write(stream, this.#key(id), offset)
  }

  override async getUpload(id: string): Promise<Upload> {
    return this.#outside(await this.#inner.getUpload(this.#key(id)), id)
  }

  override getExpiration(): number {
    return this.#expiryMs
  }
}
