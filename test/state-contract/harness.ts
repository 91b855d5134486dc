import { randomBytes } from 'node:crypto'
import type { Test } from 'tap'
import type { StoredStatus } from '../../src/domain/upload-state.ts'
import type { NewEvent } from '../../src/ports/event-outbox.ts'
import type { Area } from '../../src/ports/object-store.ts'
import type { StateStore } from '../../src/ports/state-store.ts'
import type { NewUpload, Verdict } from '../../src/ports/upload-record.ts'

/** A store on a fresh database, as each adapter's test file opens it. */
export interface StoreUnderTest {
  store: StateStore
  cleanup: () => Promise<void>
  /**
   * Another connection to the same database, as another replica holds: its statements must run
   * at the same time as `store`'s (for SQLite, whose calls are synchronous, from another thread).
   */
  openAnother: () => Promise<{ store: StateStore; close: () => Promise<void> }>
}

export type MakeStore = (options?: { batchSize?: number }) => Promise<StoreUnderTest>

/** Opens a migrated store for one test (and `others` more connections to it), closed when the test ends. */
export function setups(makeStore: MakeStore): {
  setup: (t: Test, options?: { batchSize?: number }) => Promise<StateStore>
  setupWithOthers: (t: Test, others: number, options?: { batchSize?: number }) => Promise<{ store: StateStore; others: StateStore[] }>
} {
  const setupWithOthers = async (t: Test, others: number, options?: { batchSize?: number }): Promise<{ store: StateStore; others: StateStore[] }> => {
    const { store, cleanup, openAnother } = await makeStore(options)
    const opened: Awaited<ReturnType<typeof openAnother>>[] = []
    // The other connections close first: cleanup may remove the database.
    t.teardown(async () => {
      await Promise.all(opened.map((o) => o.close()))
      await cleanup()
    })
    await store.migrate()
    await store.migrate() // migrations are idempotent
    await Promise.all(Array.from({ length: others }, async () => opened.push(await openAnother())))
    return { store, others: opened.map((o) => o.store) }
  }
  const setup = async (t: Test, options?: { batchSize?: number }): Promise<StateStore> => (await setupWithOthers(t, 0, options)).store
  return { setup, setupWithOthers }
}

export const upload = (over: Partial<NewUpload> = {}): NewUpload => {
  const id = randomBytes(16).toString('hex')
  return { id, objectKey: `k/${id}`, size: 10, sha256: 'a'.repeat(64), filename: 'a.pdf', contentType: 'application/pdf', createdAt: 1_000, ...over }
}

export const verdict = (result: Verdict['result'], signatureVersion: number | null = null): Verdict => ({
  result,
  signature: result === 'infected' ? 'Eicar' : null,
  reason: result === 'unscannable' ? 'encrypted' : null,
  engine: 'ClamAV',
  signatureVersion
})

/**
 * An upload brought to a stored status through the port: inserted, claimed and updated. Call it
 * while no other upload is due at `createdAt` (it claims the oldest due one).
 */
export const stored = async (
  store: StateStore,
  status: StoredStatus,
  over: Partial<NewUpload> & { location?: Area; nextScanAt?: number | null; signatureVersion?: number | null; scannedAt?: number } = {}
): Promise<NewUpload> => {
  const { location, nextScanAt = null, signatureVersion = null, scannedAt, ...fields } = over
  const u = upload(fields)
  await store.insertUpload(u)
  const [c] = await store.claim('setup', 1, 1_000, u.createdAt)
  if (c?.upload.id !== u.id) throw new Error('setup: another upload was due')
  const result = status === 'infected' || status === 'unscannable' ? status : 'clean'
  const where = location ?? (status === 'clean' ? 'production' : 'quarantine')
  const change = { status, verdict: verdict(result, signatureVersion), scannedAt: scannedAt ?? u.createdAt, location: where, nextScanAt, resetAttempts: true }
  if (!(await store.update(c, change, u.createdAt))) throw new Error('setup: update refused')
  return u
}

export const event = (over: Partial<NewEvent> = {}): NewEvent => ({
  id: randomBytes(8).toString('hex'),
  type: 'upload.infected',
  data: { uploadId: 'u1', verdict: { result: 'infected', signature: 'Eicar' }, note: 'quotes " and \\ and ünïcode' },
  createdAt: 2_000,
  ...over
})

export const rescanMeta = (createdAt: number, scope: Record<string, unknown> = { all: true }) => ({ id: randomBytes(16).toString('hex'), scope, createdBy: 'key-1', createdAt })
