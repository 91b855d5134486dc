import type { StoredStatus } from '../domain/upload-state.ts'
import type { Log } from '../ports/log.ts'
import type { Claim, StatusChange } from '../ports/job-queue.ts'
import type { ObjectInfo } from '../ports/object-store.ts'
import { applyChange } from './transition.ts'

/**
 * The kinds of job a worker runs, each by its own step. A new kind is added here (its status or
 * claim kind), in one new step file, and in the composition root's table of steps.
 */
export type JobKind = 'scan' | 'rescan' | 'promote' | 'requarantine'

/**
 * Statuses that are steps of an upload's own flow after its scan. The status decides before the
 * claim's kind: a rescan that found something goes on as a requarantine under the same lease.
 */
const kindOfStatus: Partial<Record<StoredStatus, JobKind>> = { promoting: 'promote', requarantining: 'requarantine' }

export function jobKindOf(claim: Claim): JobKind {
  return kindOfStatus[claim.upload.status] ?? claim.kind
}

/** What a step did: the change it wrote, or tried to (written is false when the claim was fenced off). */
export interface StepResult {
  change: StatusChange
  written: boolean
  /** The object as this step read it (a clean scan): the step it hands on to need not ask the store again. */
  source?: ObjectInfo
}

/** What the job runner gives a step besides the claim. */
export interface StepContext {
  /**
   * The scanner has answered (or was not needed): the job gives its scan slot back and goes on in
   * the worker's after-scan pool. Resolves once it has a place there; until then it keeps its
   * scan slot (backpressure). Calling it again returns the same promise. `answered`: clamd itself
   * answered (the worker learns that the scanner is reachable); false when it was not asked.
   */
  scanned(answered: boolean): Promise<void>
  /** The object as the previous step of this run read it (see StepResult.source). */
  source?: ObjectInfo
}

/** StepContext.scanned for a job run outside a worker's slots: there is no slot to give back. */
export async function noSlotToLeave(): Promise<void> {}

/**
 * Runs one kind of job one step further and writes the change it ends with, fenced by the claim.
 * Throws on a failure the retry policy decides about (retry-policy.ts).
 */
export interface JobStep {
  run(claim: Claim, signal: AbortSignal, log: Log, context?: StepContext): Promise<StepResult>
  /**
   * Undoes what a given-up job left where it must not stay, before it is marked failed; false when
   * that cannot be done, so the job goes on being retried instead.
   */
  withdraw?(claim: Claim, signal: AbortSignal): Promise<boolean>
}

/**
 * The claim as the store holds it after `change`, when that change hands the job on to another
 * step under the same lease (a clean scan: promoting); null when the job ended with it.
 */
export function handedOn(claim: Claim, change: StatusChange, now: number): Claim | null {
  const next = kindOfStatus[change.status]
  if (next === undefined || next === jobKindOf(claim)) return null
  // From here it is a step of the upload's own flow: its lease is kept in runAt.
  return { ...claim, kind: 'scan', upload: applyChange(claim.upload, change, now) }
}
