import type { DialectStatements } from './dialect-statements.ts'
import { queueFilter, rescannable, type Queue } from './shared-sql.ts'
import { SWEEPABLE_SQL } from './intent-sql.ts'

/**
 * Statements only SQLite runs. SQLite serialises writers, so a single UPDATE ... RETURNING claims
 * without handing a row out twice. RETURNING has no defined order in SQLite: the oldest due are
 * chosen, not returned in order.
 */
const NEW_TOKEN = 'lower(hex(randomblob(16)))'

export const sqliteStatements: DialectStatements = {
  claim: (queue: Queue) => `
    UPDATE uploads
       SET status = CASE status WHEN 'pending' THEN 'scanning' ELSE status END,
           lease_owner = $3, lease_token = ${NEW_TOKEN}, run_at = gw_now() + $4, attempts = attempts + 1, updated_at = $1
     WHERE id IN (SELECT id FROM uploads WHERE ${queueFilter[queue]} AND run_at <= gw_now() ORDER BY run_at LIMIT $2)
    RETURNING *`,

  claimRescans: `
    UPDATE uploads
       SET lease_owner = $3, lease_token = ${NEW_TOKEN}, next_scan_at = gw_now() + $4, attempts = attempts + 1, updated_at = $1
     WHERE id IN (SELECT id FROM uploads WHERE status IN (${rescannable}) AND next_scan_at <= gw_now() ORDER BY next_scan_at LIMIT $2)
    RETURNING *`,

  claimEvents: `
    UPDATE outbox SET lease_owner = $2, lease_token = ${NEW_TOKEN}, next_attempt_at = gw_now() + $3, attempts = attempts + 1
     WHERE seq IN (SELECT seq FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= gw_now() ORDER BY seq LIMIT $1)
    RETURNING *`,

  claimAdoption: `
    UPDATE rescans SET lease_owner = $1, lease_token = ${NEW_TOKEN}, lease_until = gw_now() + $2
     WHERE id = (SELECT id FROM rescans WHERE state = 'listing' AND bucket IS NOT NULL AND (lease_token IS NULL OR lease_until <= gw_now()) ORDER BY created_at, id LIMIT 1)
    RETURNING *`,

  claimIntents: `
    UPDATE upload_intents SET abandoned_at = COALESCE(abandoned_at, $1), sweep_after = $3
     WHERE id IN (SELECT id FROM upload_intents WHERE ${SWEEPABLE_SQL} ORDER BY sweep_after LIMIT $4)
    RETURNING *`,

  // The list as one JSON parameter, so the statement is prepared once whatever its length.
  forUpdate: '',
  knownKeys: `
    SELECT object_key FROM uploads WHERE object_key IN (SELECT value FROM json_each($1))
    UNION SELECT object_key FROM upload_intents WHERE object_key IN (SELECT value FROM json_each($1))`,
  textList: (values) => JSON.stringify(values),

  versionsTable: 'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)',
  chained: null
}
