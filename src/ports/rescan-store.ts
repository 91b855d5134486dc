/** What a rescan covers, as the store selects it (validated by the service). */
export type RescanSelection =
  | { kind: 'all' }
  | { kind: 'prefix'; prefix: string }
  | { kind: 'uploaded'; before: number | null; after: number | null }
  | { kind: 'ids'; ids: string[] }
  | { kind: 'signatureVersionBelow'; version: number }
  | { kind: 'adopt'; bucket: string; prefix: string }

export interface RescanRecord {
  id: string
  /** The scope as the operator sent it. */
  scope: Record<string, unknown>
  createdBy: string
  createdAt: number
  /** listing: an adoption still listing the bucket; running; cancelled. Done is running with nothing left. */
  state: 'listing' | 'running' | 'cancelled'
  cancelledAt: number | null
  /** Uploads covered; counts of those finished, by outcome. */
  total: number
  done: number
  clean: number
  infected: number
  unscannable: number
  failed: number
  /** When the last covered upload finished, null while some are left. */
  lastDoneAt: number | null
}

/** An adoption's listing, claimed by one worker at a time. */
export interface AdoptionClaim {
  rescanId: string
  bucket: string
  prefix: string
  continuationToken: string | null
  token: string
}

/** Rescans an operator starts: what they cover, how far they are, and cancelling them. */
export interface RescanStore {
  /**
   * Creates a rescan and, unless it is an adoption, covers the selected stored uploads and makes
   * them due now: an id list at once; other selections a batch of uploads at a time (the first one
   * here, the others by advanceRescans), the rescan listing until the last batch.
   */
  createRescan(rescan: { id: string; scope: Record<string, unknown>; createdBy: string; createdAt: number }, selection: RescanSelection): Promise<RescanRecord>
  getRescan(id: string): Promise<RescanRecord | null>
  /** Newest first. */
  listRescans(limit: number): Promise<RescanRecord[]>
  /**
   * Stops a rescan: its unfinished uploads are no longer due for it (clean ones go back to their
   * regular schedule, scannedAt + intervalMs), a batch at a time (the first one here, the others
   * by advanceRescans). It counts no outcome from then on. False when it is not running or listing.
   */
  cancelRescan(id: string, now: number, intervalMs: number): Promise<boolean>
  /**
   * One batch of the oldest rescan work left, in one short transaction: covering a listing
   * rescan's next uploads, or unwinding a cancelled one's. False when none is left.
   */
  advanceRescans(now: number, intervalMs: number): Promise<boolean>
}

/** Listing a production bucket into an adoption, a page at a time, one worker at a time. */
export interface AdoptionStore {
  /** Claims an adoption whose listing is not finished (one worker at a time, leased). */
  claimAdoption(owner: string, leaseMs: number, now: number): Promise<AdoptionClaim | null>
  /**
   * In one transaction: registers the listed objects not known yet (by object key) as pending
   * uploads in production covered by the adoption, and saves the next continuation token (null:
   * listing done). Returns how many were new, or null when the claim was lost.
   */
  adoptPage(
    claim: AdoptionClaim,
    objects: { id: string; key: string; size: number; contentType: string }[],
    nextToken: string | null,
    leaseMs: number,
    now: number
  ): Promise<number | null>
}
