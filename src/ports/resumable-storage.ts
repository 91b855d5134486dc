import type { DataStore, Locker } from '@tus/utils'

/**
 * Where tus uploads are written and how replicas take turns on one. The store writes an upload's
 * bytes into quarantine under the gateway's key (`<prefix><id>`, read back through the ObjectStore
 * port), beside its helper objects `<key>.info` and `<key>.part` (RESUMABLE_COMPANIONS).
 */
export interface ResumableStorage {
  readonly store: DataStore
  readonly locker: Locker
  close(): Promise<void>
}

/** Suffixes of the helper objects a resumable upload keeps beside its object while it is received. */
export const RESUMABLE_COMPANIONS: readonly string[] = ['.info', '.part']
