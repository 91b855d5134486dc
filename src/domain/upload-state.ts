/**
 * The upload state machine, in one place.
 *
 *   pending ──claim──▶ scanning ──clean──▶ promoting ──copied──▶ clean
 *      ▲                  │  │  └─infected / unscannable (terminal)
 *      └──transient error─┘  └─too many transient errors──▶ failed
 *
 * "promoting" is internal: the verdict is clean but the production copy may not exist yet,
 * so clients see "scanning" until the copy is in place. A claimed job whose lease expires
 * (its worker died) is claimed again in the same status and the step is re-run: every step
 * is idempotent.
 */
export type StoredStatus = 'pending' | 'scanning' | 'promoting' | 'clean' | 'infected' | 'unscannable' | 'failed'

export const publicStatuses = ['pending', 'scanning', 'clean', 'infected', 'unscannable', 'failed'] as const
export type PublicStatus = (typeof publicStatuses)[number]

const transitions: Record<StoredStatus, readonly StoredStatus[]> = {
  pending: ['scanning'],
  scanning: ['scanning', 'promoting', 'infected', 'unscannable', 'pending', 'failed'],
  promoting: ['promoting', 'clean', 'failed'],
  clean: [],
  infected: [],
  unscannable: [],
  failed: []
}

/** Statuses a worker claims: work that is due, or whose previous worker lost its lease. */
export const claimableStatuses: readonly StoredStatus[] = ['pending', 'scanning', 'promoting']

function canTransition(from: StoredStatus, to: StoredStatus): boolean {
  return transitions[from].includes(to)
}

export function assertTransition(from: StoredStatus, to: StoredStatus): void {
  if (!canTransition(from, to)) throw new Error(`illegal upload transition ${from} -> ${to}`)
}

export function publicStatus(status: StoredStatus): PublicStatus {
  return status === 'promoting' ? 'scanning' : status
}

/** Exponential backoff with full jitter, capped: attempt 1 waits up to base, attempt n up to base·2^(n-1). */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1))
  return Math.round(ceiling / 2 + (random() * ceiling) / 2)
}
