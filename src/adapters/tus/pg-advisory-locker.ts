import { setTimeout as sleep } from 'node:timers/promises'
import { ERRORS, type Lock, type Locker, type RequestRelease } from '@tus/utils'
import pg from 'pg'

/** First key of every tus lock ('tu'): apart from the state store's own advisory locks (one-key form). */
const LOCK_CLASS = 0x7475
const CHANNEL = 'gateway_tus_release'
const LOCK_SQL = `SELECT pg_try_advisory_lock(${LOCK_CLASS}, hashtext($1)) AS locked`
const UNLOCK_SQL = `SELECT pg_advisory_unlock(${LOCK_CLASS}, hashtext($1))`

export interface PgAdvisoryLockerOptions {
  url: string
  /** A lock not acquired within this long fails the request (tus: 500, the client retries). */
  acquireTimeoutMs?: number
  /** How often a waiting request tries again. */
  retryMs?: number
}

/**
 * tus upload locks shared by replicas: a PostgreSQL session advisory lock per upload id, on this
 * process's one locking connection. A session's advisory locks are reentrant, so requests of this
 * process are told apart by a map of the ids it holds. A request waiting for a lock asks its holder
 * to let go, as tus's MemoryLocker does within a process: here directly, on another replica through
 * NOTIFY (every locker LISTENs and calls its holder's requestRelease; tus then ends that request).
 * If the locking connection drops, PostgreSQL releases its locks: a new one is opened on next use.
 */
export class PgAdvisoryLocker implements Locker {
  readonly #url: string
  readonly #timeoutMs: number
  readonly #retryMs: number
  readonly #held = new Map<string, RequestRelease>()
  #client: Promise<pg.Client> | null = null

  constructor(options: PgAdvisoryLockerOptions) {
    this.#url = options.url
    this.#timeoutMs = options.acquireTimeoutMs ?? 30_000
    this.#retryMs = options.retryMs ?? 50
  }

  newLock(id: string): Lock {
    return {
      lock: (signal, requestRelease) => this.#acquire(id, signal, requestRelease),
      unlock: () => this.#release(id)
    }
  }

  async close(): Promise<void> {
    const client = this.#client
    this.#client = null
    if (client) await client.then((c) => c.end()).catch(() => undefined)
  }

  async #acquire(id: string, signal: AbortSignal, requestRelease: RequestRelease): Promise<void> {
    const deadline = Date.now() + this.#timeoutMs
    let notifiedAt = 0
    for (;;) {
      if (signal.aborted) throw ERRORS.ERR_LOCK_TIMEOUT
      const local = this.#held.get(id)
      if (local) await local()
      else {
        // Reserved here before asking PostgreSQL: no other request of this process may ask meanwhile.
        this.#held.set(id, requestRelease)
        const locked = await this.#query(LOCK_SQL, id).then(
          (rows) => rows[0]?.locked === true,
          (err: unknown) => {
            this.#held.delete(id)
            throw err
          }
        )
        if (locked) return
        this.#held.delete(id)
        if (Date.now() - notifiedAt >= 1000) {
          notifiedAt = Date.now()
          await this.#query('SELECT pg_notify($1, $2)', CHANNEL, id)
        }
      }
      if (Date.now() > deadline) throw ERRORS.ERR_LOCK_TIMEOUT
      await sleep(this.#retryMs)
    }
  }

  async #release(id: string): Promise<void> {
    // Not held any more: its session dropped, and PostgreSQL released it then.
    if (!this.#held.has(id)) return
    try {
      await this.#query(UNLOCK_SQL, id)
    } finally {
      this.#held.delete(id)
    }
  }

  async #query(sql: string, ...params: string[]): Promise<Array<Record<string, unknown>>> {
    const client = await this.#connect()
    const result = await client.query(sql, params)
    return result.rows as Array<Record<string, unknown>>
  }

  #connect(): Promise<pg.Client> {
    this.#client ??= (async () => {
      const client = new pg.Client({ connectionString: this.#url })
      client.on('error', () => {
        // The session's locks are gone with it: forget them, the next request opens a new session.
        this.#client = null
        this.#held.clear()
      })
      client.on('notification', (message) => {
        if (message.channel === CHANNEL && message.payload) void this.#held.get(message.payload)?.()
      })
      try {
        await client.connect()
        await client.query(`LISTEN ${CHANNEL}`)
        return client
      } catch (err) {
        this.#client = null
        await client.end().catch(() => undefined)
        throw err
      }
    })()
    return this.#client
  }
}
