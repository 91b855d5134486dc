import { assertTransition } from '../domain/upload-state.ts'
import type { Claim, StatusChange } from '../ports/job-queue.ts'
import type { StateStore } from '../ports/state-store.ts'

/** Every state change goes through here: checked against the state machine, fenced by the claim. */
export async function transition(state: StateStore, claim: Claim, change: StatusChange, now = Date.now()): Promise<boolean> {
  assertTransition(claim.upload.status, change.status)
  return state.update(claim, change, now)
}
