import type { Claim, JobQueue } from '../ports/job-queue.ts'
import type { Log } from '../ports/log.ts'
import type { Area, CopyOptions, ObjectStore } from '../ports/object-store.ts'

/** The claim's lease is gone: another worker owns the upload now, and this run must write nothing more. */
export class LeaseLostError extends Error {
  override name = 'LeaseLostError'
}

/**
 * When each lease this process holds was last taken or renewed: the time on the monotonic clock
 * just before the statement that did it was sent. The store set the lease's end at least leaseMs
 * after that (the lease clock gw_now() reads at or after the send), and only a claim after that end
 * takes it away (an operator's action waits for an unleased row). So a write started within a third
 * of the lease from there needs no renewal of its own: the lease runs for two thirds more. A worker
 * paused for most of its lease (GC, a stalled disk, SIGSTOP) finds that span run out, and renews,
 * or stops. Unknown claims are never fresh: their writes always renew.
 */
export class LeaseClock {
  readonly #held = new Map<string, { sentAt: number; leaseMs: number }>()

  /** A claim or renewal that was sent at `sentAt` (now()) succeeded. */
  held(claim: Claim, sentAt: number, leaseMs: number): void {
    const last = this.#held.get(claim.token)
    if (!last || sentAt > last.sentAt) this.#held.set(claim.token, { sentAt, leaseMs })
  }

  /**
   * Renews the claim's lease at a third of its length while its job runs; a job that could not
   * renew for most of its lease is aborted, because another worker may own it by now. Returns
   * the call that stops the renewals and forgets the lease, when the job is over.
   */
  keep(jobs: JobQueue, claim: Claim, leaseMs: number, job: AbortController, log: Log): () => void {
    let renewedAt = Date.now()
    const renew = setInterval(() => {
      const sentAt = this.now()
      jobs.renewLease(claim, leaseMs, Date.now()).then(
        (held) => {
          if (!held) return job.abort(new Error('lease lost'))
          renewedAt = Date.now()
          this.held(claim, sentAt, leaseMs)
        },
        (err: unknown) => {
          log.warn({ err }, 'could not renew lease')
          if (Date.now() - renewedAt > (leaseMs * 2) / 3) job.abort(new Error('lease could not be renewed'))
        }
      )
    }, Math.max(100, Math.floor(leaseMs / 3)))
    return () => {
      clearInterval(renew)
      this.#held.delete(claim.token)
    }
  }

  fresh(claim: Claim): boolean {
    const last = this.#held.get(claim.token)
    return last !== undefined && this.now() - last.sentAt < last.leaseMs / 3
  }

  /** Monotonic: a change of the wall clock neither ages nor refreshes a lease. */
  now(): number {
    return performance.now()
  }
}

/**
 * Renews the claim's lease right before an object-store write (copy, delete, tags), unless it was
 * taken or renewed a moment ago (LeaseClock), so a worker that was paused past its lease stops
 * instead of writing over the new owner's work. The store has no conditional write on a lease:
 * this bounds the window to the time between the renewal and the request, which the lease covers.
 */
async function fence(jobs: JobQueue, leases: LeaseClock, claim: Claim, leaseMs: number, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted()
  if (leases.fresh(claim)) return
  const sentAt = leases.now()
  if (!(await jobs.renewLease(claim, leaseMs, Date.now()))) throw new LeaseLostError(`lease on upload ${claim.upload.id} lost: another worker owns it now`)
  leases.held(claim, sentAt, leaseMs)
  signal?.throwIfAborted()
}

/**
 * The object-store writes of claimed jobs, each made only after fence() made sure of the claim's
 * lease: a step cannot write to a bucket unfenced by forgetting the renewal. Reads need no fence.
 */
export class FencedWrites {
  readonly #jobs: JobQueue
  readonly #objects: ObjectStore
  readonly #leaseMs: number
  readonly #leases: LeaseClock

  /** leases: shared with the worker that claims and renews, so a lease it just took is known fresh. */
  constructor(jobs: JobQueue, objects: ObjectStore, leaseMs: number, leases: LeaseClock = new LeaseClock()) {
    this.#jobs = jobs
    this.#objects = objects
    this.#leaseMs = leaseMs
    this.#leases = leases
  }

  async copy(claim: Claim, from: Area, to: Area, key: string, tags: Record<string, string>, options: CopyOptions = {}): Promise<void> {
    await fence(this.#jobs, this.#leases, claim, this.#leaseMs, options.signal)
    await this.#objects.copy(from, to, key, tags, options)
  }

  async delete(claim: Claim, area: Area, key: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    await fence(this.#jobs, this.#leases, claim, this.#leaseMs, options.signal)
    await this.#objects.delete(area, key, options)
  }

  async setTags(claim: Claim, area: Area, key: string, tags: Record<string, string>, options: { signal?: AbortSignal } = {}): Promise<void> {
    await fence(this.#jobs, this.#leases, claim, this.#leaseMs, options.signal)
    await this.#objects.setTags(area, key, tags, options)
  }
}
