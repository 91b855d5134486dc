import type { UploadChanges } from '../ports/upload-changes.ts'
import type { UploadLookup, UploadRecord } from '../ports/upload-record.ts'

export interface UploadReadCacheOptions {
  /** Uploads remembered at once; the oldest remembered goes first. */
  maxEntries: number
  /** A remembered upload is read again after this long, whatever the notices said. */
  maxAgeMs: number
}

interface Entry<T> {
  value: T
  /** The listening epoch its read began in: worth nothing in another one. */
  epoch: number
  /** When its read began, ms (performance.now). */
  at: number
  /** Which read it came from: a read begun earlier never replaces it. */
  seq: number
}

/**
 * What status reads derived from upload records, remembered between polls and forgotten as the
 * change notices arrive: a poll answered from here costs no database read. A record is remembered
 * only when no notice about it (nor a gap in the notices) came while it was read, and only while
 * notices are certain to arrive (listeningEpoch() is a number): then the store holds nothing newer
 * than what is remembered, except for a write whose notice is on its way. With SQLite the notices
 * are sent as each write commits (once it is on disk, with GW_SQLITE_SYNCHRONOUS=full), so nothing
 * answered is older than what the store has made durable; with PostgreSQL a
 * replica may show the previous state until it hears of another's write (the notice latency), and
 * while its listening connection is down every read goes to the store. maxAgeMs bounds what a
 * connection that died silently (noticed only by its ping) could leave behind.
 */
export class UploadReadCache<T> {
  readonly #uploads: UploadLookup
  readonly #changes: Pick<UploadChanges, 'onAnyChange' | 'listeningEpoch'>
  readonly #derive: (record: UploadRecord) => T
  readonly #options: UploadReadCacheOptions
  readonly #entries = new Map<string, Entry<T>>()
  /** Reads in flight, by upload: a notice during one makes what it read unfit to remember. */
  readonly #flights = new Map<string, { readers: number; notices: number }>()
  /** Bumped by a notice about every upload (notices may have been missed). */
  #generation = 0
  #seq = 0
  #listening = false

  constructor(
    deps: { uploads: UploadLookup; changes: Pick<UploadChanges, 'onAnyChange' | 'listeningEpoch'> },
    derive: (record: UploadRecord) => T,
    options: UploadReadCacheOptions
  ) {
    this.#uploads = deps.uploads
    this.#changes = deps.changes
    this.#derive = derive
    this.#options = options
  }

  /** What the last read of upload `id` derived, while it is known to be current; else undefined. */
  remembered(id: string): T | undefined {
    const entry = this.#entries.get(id)
    if (!entry) return undefined
    if (entry.epoch === this.#changes.listeningEpoch() && performance.now() - entry.at < this.#options.maxAgeMs) return entry.value
    this.#entries.delete(id)
    return undefined
  }

  /** Reads upload `id` from the store, derives from it, and remembers that when it is safe to. */
  async read(id: string): Promise<T | null> {
    this.#listen()
    const epoch = this.#changes.listeningEpoch()
    const generation = this.#generation
    const seq = ++this.#seq
    const at = performance.now()
    let flight = this.#flights.get(id)
    if (!flight) this.#flights.set(id, (flight = { readers: 0, notices: 0 }))
    flight.readers++
    const notices = flight.notices
    let record: UploadRecord | null
    try {
      record = await this.#uploads.getUpload(id)
    } finally {
      if (--flight.readers === 0) this.#flights.delete(id)
    }
    if (!record) return null
    const value = this.#derive(record)
    const heldBack = flight.notices !== notices || generation !== this.#generation || epoch === null || epoch !== this.#changes.listeningEpoch()
    const newer = this.#entries.get(id)
    if (!heldBack && !(newer && newer.seq > seq)) {
      this.#entries.delete(id)
      this.#entries.set(id, { value, epoch, at, seq })
      if (this.#entries.size > this.#options.maxEntries) this.#entries.delete(this.#entries.keys().next().value as string)
    }
    return value
  }

  /** Hears the notices from the first read on (on PostgreSQL that opens the listening connection). */
  #listen(): void {
    if (this.#listening) return
    this.#listening = true
    this.#changes.onAnyChange((id) => {
      if (id === null) {
        this.#generation++
        this.#entries.clear()
        return
      }
      this.#entries.delete(id)
      const flight = this.#flights.get(id)
      if (flight) flight.notices++
    })
  }
}
