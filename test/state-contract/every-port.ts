import type { Test } from 'tap'
import { adoptionContract } from './adoption.ts'
import type { MakeStore } from './harness.ts'
import { historyContract } from './history.ts'
import { jobQueueContract } from './job-queue.ts'
import { outboxContract } from './outbox.ts'
import { rescanStoreContract } from './rescan-store.ts'
import { tokenUsesContract } from './token-uses.ts'
import { uploadActionsContract } from './upload-actions.ts'
import { uploadIntakeContract } from './upload-intake.ts'

/** Every port's contract, which each state store adapter must pass (run by test/state-store-*.test.ts). */
export function stateStoreContract(t: Test, makeStore: MakeStore): void {
  uploadIntakeContract(t, makeStore)
  jobQueueContract(t, makeStore)
  uploadActionsContract(t, makeStore)
  rescanStoreContract(t, makeStore)
  adoptionContract(t, makeStore)
  outboxContract(t, makeStore)
  historyContract(t, makeStore)
  tokenUsesContract(t, makeStore)
}
