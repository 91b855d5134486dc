import { createHash } from 'node:crypto'
import type { UploadChanges } from '../ports/upload-changes.ts'
import type { UploadView } from './upload-view.ts'

/** Tags computed for views still in use (a remembered view is tagged once, not on every poll). */
const etags = new WeakMap<UploadView, string>()

/** A strong ETag of a status view: the same view has the same tag on every replica. Views are never changed once built. */
export function statusETag(view: UploadView): string {
  let etag = etags.get(view)
  if (etag === undefined) {
    etag = `"${createHash('sha1').update(JSON.stringify(view)).digest('base64url')}"`
    etags.set(view, etag)
  }
  return etag
}

export type WaitOutcome =
  | { kind: 'changed'; view: UploadView; etag: string }
  /** Nothing changed within the time, or the wait was cut short (client gone, shutdown). */
  | { kind: 'unchanged' }
  /** The upload's record is gone (an abandoned upload expired). */
  | { kind: 'gone' }

/**
 * Long-polled status: a waiter costs a listener in the change notices' map, one timer and, while
 * a notice is being checked, one read. No connection is held while nothing happens.
 */
export class LiveStatus {
  readonly #changes: Pick<UploadChanges, 'subscribe'>
  /** How to end each waiter now, for close(). */
  readonly #waiters = new Set<() => void>()
  #closed = false

  constructor(deps: { changes: Pick<UploadChanges, 'subscribe'> }) {
    this.#changes = deps.changes
  }

  /** Waiting clients in this process. */
  get waiting(): number {
    return this.#waiters.size
  }

  /**
   * Resolves once the status view of upload `id`, as `read` shows it to the caller (the route's
   * own read: the same view, the same access checks), has an ETag other than `etag`, or after
   * waitMs, or when `signal` aborts (the client went away) or close() is called. A read that
   * fails rejects (the client retries), so a store outage is not reported as "unchanged".
   */
  waitForChange(id: string, etag: string, waitMs: number, read: () => Promise<UploadView | null>, signal?: AbortSignal): Promise<WaitOutcome> {
    if (this.#closed || waitMs <= 0 || signal?.aborted) return Promise.resolve({ kind: 'unchanged' })
    return new Promise<WaitOutcome>((resolve, reject) => {
      let done = false
      let reading = false
      let again = false
      const settle = (finish: () => void): void => {
        if (done) return
        done = true
        unsubscribe()
        clearTimeout(timer)
        signal?.removeEventListener('abort', end)
        this.#waiters.delete(end)
        finish()
      }
      const end = (): void => settle(() => resolve({ kind: 'unchanged' }))
      // Notices arriving during a read are folded into one more read after it.
      const check = (): void => {
        if (done) return
        if (reading) {
          again = true
          return
        }
        reading = true
        read()
          .then(
            (view) => {
              if (!view) return settle(() => resolve({ kind: 'gone' }))
              const current = statusETag(view)
              if (current !== etag) settle(() => resolve({ kind: 'changed', view, etag: current }))
            },
            (err: unknown) => settle(() => reject(err))
          )
          .finally(() => {
            reading = false
            if (again) {
              again = false
              check()
            }
          })
      }
      const unsubscribe = this.#changes.subscribe(id, check)
      const timer = setTimeout(end, waitMs)
      signal?.addEventListener('abort', end, { once: true })
      this.#waiters.add(end)
      // A change committed between the caller's read and the subscription sent no notice to us.
      check()
    })
  }

  /** Answers every waiter now and takes no more (shutdown): a draining process is not held up by long polls. */
  close(): void {
    this.#closed = true
    for (const end of [...this.#waiters]) end()
  }
}
