import { open, type FileHandle } from 'node:fs/promises'

/**
 * Flushes a SQLite database's write-ahead log to disk with an fsync on libuv's thread pool, off the
 * event loop. The connection runs with synchronous=NORMAL (a commit writes its frames to the log,
 * without an fsync); a caller that needs its commit durable awaits flush() after it: the log is
 * written in order and fsync covers the whole file, so once flush() resolves that commit, and every
 * one before it, survives a power loss, as with synchronous=FULL. Commits that wait together share
 * one fsync.
 */
export class WalFlusher {
  readonly #path: string
  #file: Promise<FileHandle | null> | null = null
  /** The fsync under way, and the one that will start after it for those who came too late for it. */
  #running: Promise<void> | null = null
  #next: Promise<void> | null = null

  constructor(databasePath: string) {
    this.#path = `${databasePath}-wal`
  }

  /** Resolves once everything written to the log before this call is on disk. */
  flush(): Promise<void> {
    if (this.#running === null) {
      this.#running = this.#sync().finally(() => {
        this.#running = null
      })
      return this.#running
    }
    // The fsync under way may have started before our frames were written: wait for the next one,
    // however this one ends (its failure is its callers', not ours).
    const next = (): Promise<void> => {
      this.#next = null
      return this.flush()
    }
    this.#next ??= this.#running.then(next, next)
    return this.#next
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.#next, this.#running])
    const file = await this.#file?.catch(() => null)
    this.#file = null
    await file?.close()
  }

  async #sync(): Promise<void> {
    // Opened once the log exists (SQLite creates it with the first write); kept open with the database.
    // A failed open (ENOENT, or EMFILE under load) is tried again by the next flush.
    this.#file ??= open(this.#path, 'r').catch((err: NodeJS.ErrnoException) => {
      this.#file = null
      if (err.code === 'ENOENT') return null
      throw err
    })
    const file = await this.#file
    await file?.sync()
  }
}
