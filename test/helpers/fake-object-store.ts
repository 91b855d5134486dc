import { Readable } from 'node:stream'
import {
  ObjectChangedError,
  ObjectNotFoundError,
  type Area,
  type AreaHealth,
  type ObjectInfo,
  type ObjectLocation,
  type ObjectPage,
  type ObjectStore,
  type OpenUploadPage,
  type PutOptions
} from '../../src/ports/object-store.ts'

// An in-memory object store with the behaviour of the real ones that the services rely on: a new
// version on every write, copies conditional on a version, tags only on objects that exist.
// Writes are recorded in a journal shared with FakeJobQueue (fake-ports.ts).

interface StoredObject {
  bytes: Buffer
  info: ObjectInfo
  tags: Record<string, string>
}

type Operation = 'get' | 'copy' | 'setTags' | 'delete'

export class FakeObjectStore implements ObjectStore {
  readonly bufferedBytes = 0
  readonly #areas: Record<Area, Map<string, StoredObject>> = { quarantine: new Map(), production: new Map() }
  readonly #faults = new Map<Operation, Error>()
  #versions = 0
  readonly journal: string[]
  /** While set, every copy waits here until released (see holdCopies). */
  #copyGate: Promise<void> | null = null
  /** Copies under way now, and the most there ever were at once. */
  copiesInFlight = 0
  copiesPeak = 0

  constructor(journal: string[] = []) {
    this.journal = journal
  }

  /** The next call of `operation` fails with `err` (once). */
  failNext(operation: Operation, err: Error): void {
    this.#faults.set(operation, err)
  }

  #fault(operation: Operation): void {
    const err = this.#faults.get(operation)
    this.#faults.delete(operation)
    if (err) throw err
  }

  /** Stores an object directly (what an upload or another writer left there). */
  store(area: Area, key: string, bytes: Buffer | string, tags: Record<string, string> = {}): string {
    const body = Buffer.from(bytes)
    const version = `v${++this.#versions}`
    this.#areas[area].set(key, { bytes: body, info: { size: body.length, version, contentType: 'application/octet-stream', metadata: {} }, tags })
    return version
  }

  /** Every copy from now on waits until the returned function is called (a stalled S3). */
  holdCopies(): () => void {
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    this.#copyGate = gate
    return () => {
      if (this.#copyGate === gate) this.#copyGate = null
      release()
    }
  }

  tagsOf(area: Area, key: string): Record<string, string> | null {
    return this.#areas[area].get(key)?.tags ?? null
  }

  location(area: Area, key: string): ObjectLocation {
    return { bucket: area, key }
  }

  async put(area: Area, key: string, body: Readable, options: PutOptions): Promise<void> {
    const chunks: Buffer[] = []
    for await (const chunk of body) chunks.push(Buffer.from(chunk))
    this.store(area, key, Buffer.concat(chunks))
    this.#areas[area].get(key)!.info.metadata = options.metadata
  }

  async get(area: Area, key: string, signal?: AbortSignal): Promise<{ body: Readable; info: ObjectInfo }> {
    signal?.throwIfAborted()
    this.#fault('get')
    const object = this.#areas[area].get(key)
    if (!object) throw new ObjectNotFoundError(area, key)
    return { body: Readable.from([object.bytes]), info: { ...object.info } }
  }

  async head(area: Area, key: string): Promise<ObjectInfo | null> {
    const object = this.#areas[area].get(key)
    return object ? { ...object.info } : null
  }

  async copy(from: Area, to: Area, key: string, tags: Record<string, string>, options: { ifVersion?: string; signal?: AbortSignal } = {}): Promise<void> {
    options.signal?.throwIfAborted()
    this.journal.push(`copy ${from} ${to}`)
    this.#fault('copy')
    this.copiesPeak = Math.max(this.copiesPeak, ++this.copiesInFlight)
    try {
      await this.#copyGate
    } finally {
      this.copiesInFlight--
    }
    const object = this.#areas[from].get(key)
    if (!object) throw new ObjectNotFoundError(from, key)
    if (options.ifVersion !== undefined && options.ifVersion !== object.info.version) throw new ObjectChangedError(from, key)
    this.store(to, key, object.bytes, { ...tags })
  }

  async setTags(area: Area, key: string, tags: Record<string, string>, options: { signal?: AbortSignal } = {}): Promise<void> {
    options.signal?.throwIfAborted()
    this.journal.push(`tag ${area}`)
    this.#fault('setTags')
    const object = this.#areas[area].get(key)
    if (!object) throw new ObjectNotFoundError(area, key)
    object.tags = { ...tags }
  }

  async getTags(area: Area, key: string): Promise<Record<string, string>> {
    const object = this.#areas[area].get(key)
    if (!object) throw new ObjectNotFoundError(area, key)
    return { ...object.tags }
  }

  async list(area: Area, prefix: string, continuationToken: string | null, limit: number): Promise<ObjectPage> {
    const keys = [...this.#areas[area].keys()].filter((k) => k.startsWith(prefix) && (continuationToken === null || k > continuationToken)).sort()
    const page = keys.slice(0, limit)
    const objects = page.map((key) => ({ key, size: this.#areas[area].get(key)!.info.size, modifiedAt: 0 }))
    return { objects, nextToken: keys.length > limit ? page.at(-1)! : null }
  }

  async delete(area: Area, key: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    options.signal?.throwIfAborted()
    this.journal.push(`delete ${area}`)
    this.#fault('delete')
    this.#areas[area].delete(key)
  }

  async listOpenUploads(): Promise<OpenUploadPage> {
    return { uploads: [], nextToken: null }
  }

  async abortOpenUpload(): Promise<void> {}

  async check(): Promise<AreaHealth[]> {
    return [
      { area: 'quarantine', ok: true },
      { area: 'production', ok: true }
    ]
  }

  async close(): Promise<void> {}
}
