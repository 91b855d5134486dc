import { FileStore } from '@tus/file-store'
import { MemoryLocker } from '@tus/server'
import { S3Store, type MetadataValue } from '@tus/s3-store'
import type { KvStore } from '@tus/utils'
import type { ResumableStorage } from '../../ports/resumable-storage.ts'
import { InfoFileStore } from './info-file-store.ts'
import { KeyedDataStore } from './keyed-data-store.ts'
import { PgAdvisoryLocker } from './pg-advisory-locker.ts'

export interface ResumableStorageOptions {
  keyPrefix: string
  expiryMs: number
  /** The state store's URL: PostgreSQL means replicas, and their locks are taken there. */
  databaseUrl: string
  store:
    | { kind: 's3'; bucket: string; endpoint?: string; region: string; forcePathStyle: boolean; partSizeBytes: number }
    | { kind: 'fs'; directory: string }
}

/** @tus/s3-store caches each upload's info in memory: another replica's PATCH would leave it stale. */
class NoCache implements KvStore<MetadataValue> {
  async get(): Promise<undefined> {
    return undefined
  }
  async set(): Promise<void> {}
  async delete(): Promise<void> {}
}

/** Its S3 client's sockets are closed with the gateway. */
class ClosableS3Store extends S3Store {
  close(): void {
    this.client.destroy()
  }
}

/** The tus store over the quarantine area (bucket or directory) and the locker the replicas share. */
export function openResumableStorage(options: ResumableStorageOptions): ResumableStorage {
  const { store } = options
  const inner =
    store.kind === 's3'
      ? new ClosableS3Store({
          // Parts are buffered in the OS temp directory until full (at least 5 MiB, S3's minimum).
          partSize: Math.max(store.partSizeBytes, 5 * 1024 * 1024),
          useTags: false,
          cache: new NoCache(),
          s3ClientConfig: {
            bucket: store.bucket,
            ...(store.endpoint ? { endpoint: store.endpoint } : {}),
            region: store.region,
            forcePathStyle: store.forcePathStyle,
            requestChecksumCalculation: 'WHEN_REQUIRED',
            responseChecksumValidation: 'WHEN_REQUIRED'
          }
        })
      : new FileStore({ directory: store.directory, configstore: new InfoFileStore(store.directory) })
  const pgLocker = options.databaseUrl.startsWith('sqlite:') ? null : new PgAdvisoryLocker({ url: options.databaseUrl })
  return {
    store: new KeyedDataStore(inner, { keyPrefix: options.keyPrefix, expiryMs: options.expiryMs }),
    locker: pgLocker ?? new MemoryLocker(),
    async close() {
      await pgLocker?.close()
      if (inner instanceof ClosableS3Store) inner.close()
    }
  }
}
