import type { Claim, JobQueue } from '../ports/job-queue.ts'
import type { Area, CopyOptions, ObjectStore } from '../ports/object-store.ts'

/** The claim's lease is gone: another worker owns the upload now, and this run must write nothing more. */
export class LeaseLostError extends Error {
  override name = 'LeaseLostError'
}

/**
 * Renews the claim's lease right before an object-store write (copy, delete, tags), so a worker
 * that was paused past its lease (GC, a stalled disk, SIGSTOP) stops instead of writing over the
 * new owner's work. The store has no conditional write on a lease: this bounds the window to the
 * time between this renewal and the request, which the renewed lease covers.
 */
async function fence(jobs: JobQueue, claim: Claim, leaseMs: number, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted()
  if (!(await jobs.renewLease(claim, leaseMs, Date.now()))) throw new LeaseLostError(`lease on upload ${claim.upload.id} lost: another worker owns it now`)
  signal?.throwIfAborted()
}

/**
 * The object-store writes of claimed jobs, each made only after fence() renewed the claim's
 * lease: a step cannot write to a bucket unfenced by forgetting the renewal. Reads need no fence.
 */
export class FencedWrites {
  readonly #jobs: JobQueue
  readonly #objects: ObjectStore
  readonly #leaseMs: number

  constructor(jobs: JobQueue, objects: ObjectStore, leaseMs: number) {
    this.#jobs = jobs
    this.#objects = objects
    this.#leaseMs = leaseMs
  }

  async copy(claim: Claim, from: Area, to: Area, key: string, tags: Record<string, string>, options: CopyOptions = {}): Promise<void> {
    await fence(this.#jobs, claim, this.#leaseMs, options.signal)
    await this.#objects.copy(from, to, key, tags, options)
  }

  async delete(claim: Claim, area: Area, key: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    await fence(this.#jobs, claim, this.#leaseMs, options.signal)
    await this.#objects.delete(area, key, options)
  }

  async setTags(claim: Claim, area: Area, key: string, tags: Record<string, string>, options: { signal?: AbortSignal } = {}): Promise<void> {
    await fence(this.#jobs, claim, this.#leaseMs, options.signal)
    await this.#objects.setTags(area, key, tags, options)
  }
}
