/**
 * Columns of `uploads` that are the job queue's bookkeeping (leases, schedules, retries): writing
 * only these changes nothing a client sees, so no change notice is sent for it (a lease renewal
 * would otherwise wake every waiting client). Any other column counts, new ones included.
 */
export const quietUploadColumns = ['run_at', 'lease_owner', 'lease_token', 'attempts', 'last_error', 'next_scan_at', 'updated_at', 'failed_retry_at', 'failed_rounds'] as const

/** The channels the PostgreSQL trigger (migration 9) notifies: payload `<schema>:<upload id>`, and `<schema>`. */
export const UPLOAD_CHANGED_CHANNEL = 'gw_upload_changed'
export const UPLOAD_DUE_CHANNEL = 'gw_upload_due'

/**
 * SQLite's triggers for the in-process notices: temporary (on this connection only), so another
 * program writing the file needs no gw_upload_changed() function; built from the table's columns
 * as they are after the migrations. The second argument: the upload became pending.
 */
export function sqliteChangeTriggers(columns: readonly string[]): string {
  const quiet = new Set<string>(quietUploadColumns)
  const changed = columns.filter((c) => !quiet.has(c)).map((c) => `OLD."${c}" IS NOT NEW."${c}"`)
  return `
    DROP TRIGGER IF EXISTS temp.gw_upload_inserted;
    DROP TRIGGER IF EXISTS temp.gw_upload_updated;
    DROP TRIGGER IF EXISTS temp.gw_upload_deleted;
    CREATE TEMP TRIGGER gw_upload_inserted AFTER INSERT ON main.uploads BEGIN SELECT gw_upload_changed(NEW.id, NEW.status = 'pending'); END;
    CREATE TEMP TRIGGER gw_upload_updated AFTER UPDATE ON main.uploads WHEN ${changed.join(' OR ') || '0'} BEGIN SELECT gw_upload_changed(NEW.id, NEW.status = 'pending' AND OLD.status IS NOT 'pending'); END;
    CREATE TEMP TRIGGER gw_upload_deleted AFTER DELETE ON main.uploads BEGIN SELECT gw_upload_changed(OLD.id, 0); END;
  `
}
