import pg from 'pg'
import type { UploadChangeListener, UploadChanges } from '../../ports/upload-changes.ts'
import { UPLOAD_CHANGED_CHANNEL, UPLOAD_DUE_CHANNEL } from './upload-change-columns.ts'
import { UploadChangeRegistry } from './upload-change-registry.ts'

export interface PgUploadChangesOptions {
  url: string
  /** Only notices about this schema's uploads are passed on (one database may hold several gateways). */
  schema: string
  applicationName?: string
  /** While the listening connection is down, listeners are told to re-read this often. */
  fallbackIntervalMs?: number
  /** The listening connection is checked this often (a silent network is noticed no later). */
  pingIntervalMs?: number
}

const MAX_RETRY_MS = 30_000

/**
 * Change notices across replicas: one dedicated connection per process LISTENs on the channels the
 * uploads trigger (migration 9) notifies from every writing transaction, and hands what it hears
 * to the listeners of this process. It connects at the first subscription (an API process nobody
 * waits on holds no connection). While it is not listening (connecting, or lost and reconnecting
 * with backoff), every upload's listener is told to re-read each fallbackIntervalMs, and once more
 * when listening resumes, so no waiter misses a change however long the outage. Workers' wake-ups
 * need no such fallback: they poll anyway.
 */
export class PgUploadChanges implements UploadChanges {
  readonly #registry = new UploadChangeRegistry()
  readonly #options: Required<Omit<PgUploadChangesOptions, 'applicationName'>> & { applicationName: string | undefined }
  #client: pg.Client | null = null
  #started = false
  #closed = false
  #fallback: NodeJS.Timeout | null = null
  #ping: NodeJS.Timeout | null = null
  #retry: NodeJS.Timeout | null = null
  #retryMs = 500
  /** Counts the times listening started; null while not listening (see listeningEpoch). */
  #epoch: number | null = null
  #epochs = 0

  constructor(options: PgUploadChangesOptions) {
    this.#options = { fallbackIntervalMs: 1_000, pingIntervalMs: 15_000, applicationName: undefined, ...options }
  }

  subscribe(id: string, listener: UploadChangeListener): () => void {
    const unsubscribe = this.#registry.subscribe(id, listener)
    this.#start()
    return unsubscribe
  }

  onUploadDue(listener: () => void): () => void {
    const unsubscribe = this.#registry.onUploadDue(listener)
    this.#start()
    return unsubscribe
  }

  listenerCount(): number {
    return this.#registry.listenerCount()
  }

  onAnyChange(listener: (id: string | null) => void): () => void {
    const unsubscribe = this.#registry.onAnyChange(listener)
    this.#start()
    return unsubscribe
  }

  listeningEpoch(): number | null {
    return this.#epoch
  }

  async close(): Promise<void> {
    this.#closed = true
    this.#epoch = null
    for (const timer of [this.#fallback, this.#ping, this.#retry]) if (timer) clearTimeout(timer)
    const client = this.#client
    this.#client = null
    await client?.end().catch(() => {})
  }

  #start(): void {
    if (this.#started || this.#closed) return
    this.#started = true
    this.#connect()
  }

  #connect(): void {
    this.#epoch = null
    if (this.#closed) return
    this.#fallBack()
    const client = new pg.Client({
      connectionString: this.#options.url,
      application_name: this.#options.applicationName,
      connectionTimeoutMillis: 5_000,
      query_timeout: 5_000,
      keepAlive: true
    })
    this.#client = client
    client.on('error', () => this.#lost(client))
    client.on('end', () => this.#lost(client))
    client.on('notification', (notice) => this.#heard(notice))
    client
      .connect()
      .then(() => client.query(`LISTEN ${UPLOAD_CHANGED_CHANNEL}; LISTEN ${UPLOAD_DUE_CHANNEL}`))
      .then(() => {
        if (this.#client !== client) return
        this.#retryMs = 500
        if (this.#fallback) clearInterval(this.#fallback)
        this.#fallback = null
        this.#ping = setInterval(() => client.query('SELECT 1').catch(() => this.#lost(client)), this.#options.pingIntervalMs).unref()
        // Writes committed before LISTEN took effect were not heard: every listener re-reads once.
        this.#epoch = ++this.#epochs
        this.#registry.publishAll()
      })
      .catch(() => this.#lost(client))
  }

  #heard(notice: pg.Notification): void {
    const prefix = `${this.#options.schema}:`
    if (notice.channel === UPLOAD_CHANGED_CHANNEL && notice.payload?.startsWith(prefix)) this.#registry.publish([notice.payload.slice(prefix.length)])
    else if (notice.channel === UPLOAD_DUE_CHANNEL && notice.payload === this.#options.schema) this.#registry.publishDue()
  }

  /** The connection failed or ended: poll in the meantime, reconnect after a backoff. */
  #lost(client: pg.Client): void {
    if (this.#client !== client) return
    this.#client = null
    this.#epoch = null
    if (this.#ping) clearInterval(this.#ping)
    this.#ping = null
    client.end().catch(() => {})
    if (this.#closed) return
    this.#fallBack()
    this.#retry = setTimeout(() => {
      this.#retry = null
      this.#connect()
    }, this.#retryMs).unref()
    this.#retryMs = Math.min(this.#retryMs * 2, MAX_RETRY_MS)
  }

  #fallBack(): void {
    this.#fallback ??= setInterval(() => this.#registry.publishAll(), this.#options.fallbackIntervalMs).unref()
  }
}
