import type { AdoptionClaim, AdoptionStore } from '../../ports/rescan-store.ts'
import { filenameOfKey, toAdoptionClaim } from './row-mapping.ts'
import type { SqlDatabase } from './sql-database.ts'

/**
 * The fence and the progress of an adoption page: $1 next token, $2 state, $3 lease, $4 id,
 * $5 token. Nothing changes (0 rows) when the listing is no longer this claim's.
 */
const ADOPT_PROGRESS_SQL = `
  UPDATE rescans SET continuation_token = $1, state = $2, lease_until = gw_now() + $3
   WHERE id = $4 AND lease_token = $5 AND state = 'listing'`

/** $1 id, $2 key, $3 size, $4 filename, $5 content type, $6 now: an adopted object, skipped when its key is known already. */
const INSERT_ADOPTED_SQL = `
  INSERT INTO uploads (id, object_key, size, sha256, filename, content_type, status, location, created_at, updated_at, run_at)
  VALUES ($1, $2, $3, '', $4, $5, 'pending', 'production', $6, $6, $6) ON CONFLICT (object_key) DO NOTHING`
const INSERT_ITEM_SQL = 'INSERT INTO rescan_items (rescan_id, upload_id) VALUES ($1, $2)'

/** Adoption: one lister at a time registers a bucket's objects, page by page, under a fenced lease. */
export function adoptionSql(db: SqlDatabase): AdoptionStore {
  const { statements } = db
  return {
    async claimAdoption(owner: string, leaseMs: number, now: number): Promise<AdoptionClaim | null> {
      const [row] = await db.at(now).rows(statements.claimAdoption, [owner, leaseMs])
      return row ? toAdoptionClaim(row) : null
    },

    adoptPage(
      claim: AdoptionClaim,
      objects: { id: string; key: string; size: number; contentType: string }[],
      nextToken: string | null,
      leaseMs: number,
      now: number
    ): Promise<number | null> {
      return db.transaction(async (tx) => {
        // The fence comes first and locks the listing: a claimAdoption meanwhile skips it.
        const progress = [nextToken, nextToken === null ? 'running' : 'listing', leaseMs, claim.rescanId, claim.token]
        if ((await tx.write(ADOPT_PROGRESS_SQL, progress)) !== 1) return null
        if (objects.length === 0) return 0
        if (statements.chained) {
          const columns = [objects.map((o) => o.id), objects.map((o) => o.key), objects.map((o) => o.size), objects.map((o) => filenameOfKey(o.key)), objects.map((o) => o.contentType)]
          return tx.write(statements.chained.adoptObjects, [...columns, now, claim.rescanId])
        }
        let added = 0
        for (const o of objects) {
          // A key the gateway knows already (an upload, or an earlier run of this page) is skipped.
          if ((await tx.write(INSERT_ADOPTED_SQL, [o.id, o.key, o.size, filenameOfKey(o.key), o.contentType, now])) !== 1) continue
          await tx.write(INSERT_ITEM_SQL, [claim.rescanId, o.id])
          added++
        }
        return added
      }, { now })
    }
  }
}
