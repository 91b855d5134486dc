/**
 * Forward-only, numbered migrations for PostgreSQL, kept in step with sqlite-migrations.ts.
 * They run with search_path set to the store's schema, so names are unqualified. A database
 * whose schema is newer than the last one here was written by a newer gateway: start-up
 * refuses it rather than guess.
 */
export const migrations: readonly { version: number; sql: string }[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE uploads (
        id TEXT PRIMARY KEY,
        object_key TEXT NOT NULL,
        size BIGINT NOT NULL,
        sha256 TEXT NOT NULL,
        filename TEXT,
        content_type TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        scanned_at BIGINT,
        -- JSON as text, like SQLite: the store parses it, the database never looks inside.
        verdict TEXT,
        scanned_version TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        run_at BIGINT NOT NULL,
        lease_owner TEXT,
        lease_token TEXT
      );
      -- Only claimable rows are indexed, so a claim stays fast however many finished uploads there are.
      CREATE INDEX uploads_due ON uploads (run_at) WHERE status IN ('pending', 'scanning', 'promoting');
      CREATE TABLE scans (
        id BIGSERIAL PRIMARY KEY,
        upload_id TEXT NOT NULL REFERENCES uploads (id),
        started_at BIGINT NOT NULL,
        duration_ms BIGINT NOT NULL,
        endpoint TEXT,
        engine TEXT,
        signature_version INTEGER,
        outcome TEXT NOT NULL,
        signature TEXT,
        detail TEXT,
        bytes BIGINT NOT NULL
      );
      CREATE INDEX scans_upload ON scans (upload_id, id);
    `
  },
  {
    // Rescans, adoption, releases, the admin audit trail and the webhook outbox.
    version: 2,
    sql: `
      ALTER TABLE uploads ADD COLUMN location TEXT NOT NULL DEFAULT 'quarantine';
      ALTER TABLE uploads ADD COLUMN next_scan_at BIGINT;
      -- Copied from the verdict on every write of one, so a rescan can select by it.
      ALTER TABLE uploads ADD COLUMN signature_version INTEGER;
      ALTER TABLE uploads ADD COLUMN released_by TEXT;
      ALTER TABLE uploads ADD COLUMN released_at BIGINT;
      ALTER TABLE uploads ADD COLUMN release_reason TEXT;
      -- Clean uploads were promoted: their bytes are in production. One pass over a big table.
      UPDATE uploads SET location = CASE WHEN status = 'clean' THEN 'production' ELSE location END,
                         signature_version = (verdict::jsonb ->> 'signatureVersion')::integer
       WHERE status = 'clean' OR verdict IS NOT NULL;
      -- Adoption registers an object by its key, exactly once.
      CREATE UNIQUE INDEX uploads_object_key ON uploads (object_key);
            DROP INDEX uploads_due;
      -- Two claim queues (shared-sql.ts queueFilter, word for word): the uploads' flow, and adopted
      -- objects waiting for their first scan, claimed with the rescans' share.
      CREATE INDEX uploads_due ON uploads (run_at) WHERE status IN ('pending', 'scanning', 'promoting', 'requarantining') AND NOT (status = 'pending' AND location = 'production');
      CREATE INDEX uploads_adopted_due ON uploads (run_at) WHERE status = 'pending' AND location = 'production';
      CREATE INDEX uploads_rescan_due ON uploads (next_scan_at) WHERE next_scan_at IS NOT NULL;
      CREATE TABLE rescans (
        id TEXT PRIMARY KEY,
        scope TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        state TEXT NOT NULL,
        cancelled_at BIGINT,
        -- An adoption's listing: where, how far, and who lists it now.
        bucket TEXT,
        prefix TEXT,
        continuation_token TEXT,
        lease_owner TEXT,
        lease_token TEXT,
        lease_until BIGINT
      );
      CREATE INDEX rescans_created ON rescans (created_at, id);
      CREATE TABLE rescan_items (
        rescan_id TEXT NOT NULL REFERENCES rescans (id),
        upload_id TEXT NOT NULL REFERENCES uploads (id),
        -- NULL while unfinished; a RescanOutcome, or 'cancelled' when the rescan was.
        outcome TEXT,
        done_at BIGINT,
        PRIMARY KEY (rescan_id, upload_id)
      );
      CREATE INDEX rescan_items_open ON rescan_items (upload_id) WHERE outcome IS NULL;
      CREATE TABLE audit (
        id BIGSERIAL PRIMARY KEY,
        at BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL
      );
      CREATE INDEX audit_at ON audit (at, id);
      CREATE TABLE outbox (
        seq BIGSERIAL PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        -- The next try, or the lease end while one is claimed.
        next_attempt_at BIGINT NOT NULL,
        delivered_at BIGINT,
        last_error TEXT,
        lease_owner TEXT,
        lease_token TEXT
      );
      CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL;
    `
  },
  {
    // Failed uploads retried automatically after an infrastructure failure; what a release was made against.
    version: 3,
    sql: `
      -- Automatic rounds used since the last operator action, and when the next one is due (NULL: none).
      ALTER TABLE uploads ADD COLUMN failed_rounds INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE uploads ADD COLUMN failed_retry_at BIGINT;
      -- The status and signature an operator released: the same detection later does not take it out again.
      ALTER TABLE uploads ADD COLUMN released_status TEXT;
      ALTER TABLE uploads ADD COLUMN released_signature TEXT;
      -- Earlier releases: what their stored verdict says (none: released while failed).
      UPDATE uploads SET released_status = CASE WHEN (verdict::jsonb ->> 'result') IN ('infected', 'unscannable') THEN (verdict::jsonb ->> 'result') ELSE 'failed' END,
                         released_signature = (verdict::jsonb ->> 'signature')
       WHERE released_at IS NOT NULL AND verdict IS NOT NULL;
      UPDATE uploads SET released_status = 'failed' WHERE released_at IS NOT NULL AND verdict IS NULL;
      CREATE INDEX uploads_failed_retry ON uploads (failed_retry_at) WHERE status = 'failed' AND failed_retry_at IS NOT NULL;
    `
  },
  {
    // One clock for leases (the database's), batched rescan selection and cancellation, retention.
    version: 4,
    sql: `
      -- Every replica compares leases with this clock, not its own: a replica whose clock runs fast
      -- cannot take a live lease. Milliseconds since the epoch, like every time column.
      CREATE FUNCTION gw_now() RETURNS BIGINT LANGUAGE sql STABLE AS 'SELECT (extract(epoch FROM statement_timestamp()) * 1000)::bigint';
      -- A rescan selecting its uploads (state listing) or being cancelled covers or unwinds them in
      -- batches by upload id: what it selects, and the last upload id done (NULL: nothing left to do).
      ALTER TABLE rescans ADD COLUMN selection TEXT;
      ALTER TABLE rescans ADD COLUMN cursor_id TEXT;
      -- Retention: what is old enough to go, found without scanning whole tables.
      CREATE INDEX rescan_items_open_rescan ON rescan_items (rescan_id, upload_id) WHERE outcome IS NULL;
      CREATE INDEX outbox_delivered ON outbox (delivered_at) WHERE delivered_at IS NOT NULL;
      CREATE INDEX scans_started ON scans (started_at);
    `
  },
  {
    // Upload intents (written before an upload's first byte is stored, so the sweeper can remove
    // what was never committed) and the idempotency keys of POST /v1/uploads.
    version: 5,
    sql: `
      CREATE TABLE upload_intents (
        id TEXT PRIMARY KEY,
        object_key TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        -- Set when the upload will not be committed (refused, or claimed by the sweeper): a commit then fails.
        abandoned_at BIGINT,
        -- When the sweeper may look at it (again).
        sweep_after BIGINT NOT NULL
      );
      CREATE INDEX upload_intents_sweep ON upload_intents (sweep_after);
      CREATE INDEX upload_intents_key ON upload_intents (object_key);
      CREATE TABLE idempotency_keys (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        upload_id TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (scope, key)
      );
      CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
    `
  },
  {
    // Upload tokens: how many uploads each token (by jti) has created, kept until it expires so
    // retention can prune it; which token an intent used (an abandoned upload gives its use back);
    // who owns an upload a token created.
    version: 6,
    sql: `
      CREATE TABLE token_uses (
        jti TEXT PRIMARY KEY,
        uses INTEGER NOT NULL,
        expires_at BIGINT NOT NULL
      );
      CREATE INDEX token_uses_expires ON token_uses (expires_at);
      ALTER TABLE upload_intents ADD COLUMN token_id TEXT;
      ALTER TABLE uploads ADD COLUMN owner_token_id TEXT;
      ALTER TABLE uploads ADD COLUMN owner_subject TEXT;
      -- JSON as text, like the verdict.
      ALTER TABLE uploads ADD COLUMN owner_meta TEXT;
    `
  },
  {
    // Live status: a committed write to an upload that a client could see notifies the listeners of
    // every replica (channel gw_upload_changed, payload '<schema>:<id>'), from the writing
    // transaction, whichever code wrote it. Bookkeeping columns alone (quietUploadColumns in
    // upload-change-columns.ts) do not. An upload that became pending also wakes idle workers
    // (channel gw_upload_due, payload '<schema>').
    version: 9,
    sql: `
      CREATE FUNCTION gw_upload_changed() RETURNS trigger LANGUAGE plpgsql AS $$
      DECLARE
        quiet CONSTANT text[] := ARRAY['run_at', 'lease_owner', 'lease_token', 'attempts', 'last_error', 'next_scan_at', 'updated_at', 'failed_retry_at', 'failed_rounds'];
      BEGIN
        IF TG_OP = 'UPDATE' AND (to_jsonb(OLD) - quiet) = (to_jsonb(NEW) - quiet) THEN
          RETURN NULL;
        END IF;
        PERFORM pg_notify('gw_upload_changed', TG_TABLE_SCHEMA || ':' || CASE TG_OP WHEN 'DELETE' THEN OLD.id ELSE NEW.id END);
        IF TG_OP <> 'DELETE' AND NEW.status = 'pending' AND (TG_OP = 'INSERT' OR OLD.status <> 'pending') THEN
          PERFORM pg_notify('gw_upload_due', TG_TABLE_SCHEMA);
        END IF;
        RETURN NULL;
      END
      $$;
      CREATE TRIGGER uploads_changed AFTER INSERT OR UPDATE OR DELETE ON uploads FOR EACH ROW EXECUTE FUNCTION gw_upload_changed();
    `
  }
]
