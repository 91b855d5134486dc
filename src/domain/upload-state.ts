/**
 * The upload state machine, in one place.
 *
 *   pending ──claim──▶ scanning ──clean──▶ promoting ──copied──▶ clean ◀─────────────┐
 *      ▲                  │  │  │                                  │ rescan: clean   │
 *      └─transient error──┘  │  └─infected / unscannable           │ (same status,   │
 *                            └─too many transient errors─▶ failed  │  next scan due) │
 *                                                                  │                 │
 *   clean ──rescan finds infected / unscannable──▶ requarantining ──moved──▶ infected | unscannable
 *   infected | unscannable | failed ──admin release──▶ promoting ──copied──▶ clean (released)
 *   failed ──admin rescan, or an automatic round after an infrastructure failure──▶ pending
 *   (no record) ──content type not allowed (a completed tus upload)──▶ rejected   (final)
 *
 * Released uploads stay in rolling rescans: a later verdict other than the one released takes
 * them out of production again (requarantining), the same one does not.
 * "promoting" and "requarantining" are internal: clients see "scanning" while the production
 * copy may not exist yet, and the verdict (infected, unscannable) while a detected object is
 * being taken out of production. A claimed job whose lease expires (its worker died) is
 * claimed again in the same status and the step is re-run: every step is idempotent.
 * Objects adopted from the production bucket start pending with their bytes in production;
 * their clean verdict needs no promotion and a detection takes them out (requarantining).
 * Rescans do not change the status while they run: their lease is kept with the next scan time.
 * "rejected" is written once, with the record (commitRejectedUpload), for an upload whose content
 * type is not allowed and whose bytes could not be refused before they were stored (tus). It is
 * final: it was never scanned, so it may not be released (that would promote unscanned bytes),
 * and a rescan would not change its type. The object stays in quarantine for an operator.
 */
export type StoredStatus = 'pending' | 'scanning' | 'promoting' | 'clean' | 'infected' | 'unscannable' | 'failed' | 'requarantining' | 'rejected'

export const publicStatuses = ['pending', 'scanning', 'clean', 'infected', 'unscannable', 'failed', 'rejected'] as const
export type PublicStatus = (typeof publicStatuses)[number]

const transitions: Record<StoredStatus, readonly StoredStatus[]> = {
  pending: ['scanning'],
  scanning: ['scanning', 'promoting', 'infected', 'unscannable', 'pending', 'failed', 'clean', 'requarantining'],
  promoting: ['promoting', 'clean', 'failed'],
  requarantining: ['requarantining', 'infected', 'unscannable'],
  clean: ['clean', 'requarantining'],
  infected: ['infected', 'promoting'],
  unscannable: ['unscannable', 'promoting'],
  failed: ['promoting', 'pending'],
  rejected: []
}

/** Statuses a worker claims: work that is due, or whose previous worker lost its lease. */
export const claimableStatuses: readonly StoredStatus[] = ['pending', 'scanning', 'promoting', 'requarantining']

/** Stored objects a rescan may cover. */
export const rescannableStatuses: readonly StoredStatus[] = ['clean', 'infected', 'unscannable']

/** Statuses an operator may release (a false positive, or an object the scanner could not handle). */
export const releasableStatuses: readonly StoredStatus[] = ['infected', 'unscannable', 'failed']

function canTransition(from: StoredStatus, to: StoredStatus): boolean {
  return transitions[from].includes(to)
}

export function assertTransition(from: StoredStatus, to: StoredStatus): void {
  if (!canTransition(from, to)) throw new Error(`illegal upload transition ${from} -> ${to}`)
}

/** What clients see: internal steps are shown as the status they lead to or come from. */
export function publicStatus(status: StoredStatus, verdict: 'clean' | 'infected' | 'unscannable' | 'rejected' | null = null): PublicStatus {
  if (status === 'promoting') return 'scanning'
  if (status === 'requarantining') return verdict === 'unscannable' ? 'unscannable' : 'infected'
  return status
}

/** Exponential backoff with full jitter, capped: attempt 1 waits up to base, attempt n up to base·2^(n-1). */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1))
  return Math.round(ceiling / 2 + (random() * ceiling) / 2)
}

/**
 * When a stored object is due for its next rolling rescan: the interval after its scan, less a
 * random part of up to `jitter` of it, so a busy upload day does not make a busy rescan day.
 */
export function nextRescanAt(scannedAt: number, intervalMs: number, jitter: number, random: () => number = Math.random): number {
  return scannedAt + Math.round(intervalMs * (1 - jitter * random()))
}

/**
 * Whether a detection is the one an operator released, so finding it again is not news: the same
 * status and, for infected, the same signature. Anything released while failed was never judged.
 */
export function isReleasedVerdict(
  released: { status: 'infected' | 'unscannable' | 'failed'; signature: string | null },
  verdict: { result: 'clean' | 'infected' | 'unscannable'; signature: string | null }
): boolean {
  if (released.status === 'failed' || verdict.result !== released.status) return false
  return verdict.result !== 'infected' || verdict.signature === released.signature
}
