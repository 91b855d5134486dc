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
  }
]
