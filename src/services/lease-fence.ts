import type { Claim, JobQueue } from '../ports/job-queue.ts'

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
export async function fence(jobs: JobQueue, claim: Claim, leaseMs: number, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted()
  if (!(await jobs.renewLease(claim, leaseMs, Date.now()))) throw new LeaseLostError(`lease on upload ${claim.upload.id} lost: another worker owns it now`)
  signal?.throwIfAborted()
}
