/** Called when an upload may have changed; it carries no state: the listener reads what it needs. */
export type UploadChangeListener = () => void

/**
 * Notices that an upload's record was written, by any writer (on PostgreSQL, by any replica).
 * A notice comes after the write is committed, so a read then sees it. Notices may repeat or be
 * spurious (a write that changed nothing a client sees, a reconnection): listeners re-read and
 * compare. Subscribing costs an entry in a map, nothing per upload in the database.
 */
export interface UploadChanges {
  /** Calls listener after writes to upload `id` until the returned function is called. */
  subscribe(id: string, listener: UploadChangeListener): () => void
  /**
   * Calls listener when an upload becomes pending (a new upload, or one put back to be scanned), by
   * any writer, until the returned function is called: an idle worker may look for work at once.
   */
  onUploadDue(listener: () => void): () => void
  /** Listeners subscribed in this process (a gauge: waiting status requests). */
  listenerCount(): number
  /**
   * Calls listener, synchronously as each notice arrives and before the per-upload listeners, with
   * the id of an upload that may have changed, or null when any may have (notices may have been
   * missed: a reconnection, the fallback while not listening). Not counted by listenerCount().
   * The listener must be quick and must not throw. Until the returned function is called.
   */
  onAnyChange(listener: (id: string | null) => void): () => void
  /**
   * A number while every write committed from now on is certain to be noticed here (it changes
   * each time listening starts again), null while notices may be missed: on PostgreSQL, while the
   * listening connection is not up. Always the same number for the in-process notices (SQLite).
   */
  listeningEpoch(): number | null
}
