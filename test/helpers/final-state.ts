import type { S3Client } from '@aws-sdk/client-s3'
import type { Test } from 'tap'
import { listKeys, objectSha256, objectTags } from './bucket-checks.ts'
import { PRODUCTION, QUARANTINE } from './gateway-env.ts'
import { pgQuery } from './postgres.ts'
import { forEachLimit, signatureOf, TERMINAL, type Kind } from './upload-load.ts'

export interface Tracked {
  kind: Kind
  sha256: string
}

export interface FinalStats {
  /** Tries recorded for the upload with the most (error rows included). */
  maxScans: number
  /** Scan rows that recorded an error instead of a verdict. */
  errorRows: number
  /** Uploads scanned to a verdict more than once (always the same verdict, or a check fails). */
  rescanned: number
  /** Quarantine keys that are no accepted infected upload: orphans, for the caller to judge. */
  strays: string[]
}

/**
 * After a run has settled: every accepted upload has the verdict its content deserves, production
 * holds exactly the clean ones with their exact bytes, quarantine every infected one (what else it
 * holds is returned as strays), and the audit trail shows one verdict per upload and a clean scan
 * behind every promotion.
 */
export async function checkFinalState(
  t: Test,
  o: { s3: S3Client; schema: string; tracked: Map<string, Tracked>; views: Map<string, any> } // eslint-disable-line @typescript-eslint/no-explicit-any
): Promise<FinalStats> {
  const { s3, schema, tracked, views } = o
  const problems = { notTerminal: [] as string[], failed: [] as string[], wrong: [] as string[] }
  for (const [id, item] of tracked) {
    const view = views.get(id)
    if (!TERMINAL.includes(view?.status)) problems.notTerminal.push(`${id} (${item.kind}): ${view?.status ?? 'never answered'}`)
    else if (view.status === 'failed' || view.status === 'unscannable') problems.failed.push(`${id} (${item.kind}): ${JSON.stringify(view)}`)
    else if (item.kind === 'clean' ? view.status !== 'clean' : !(view.status === 'infected' && signatureOf[item.kind].test(view.verdict?.signature ?? '')))
      problems.wrong.push(`${id} (${item.kind}): ${view.status} ${view.verdict?.signature ?? ''}`)
  }
  t.same(problems.notTerminal, [], 'every accepted upload reached a terminal status')
  t.same(problems.failed, [], 'none ended failed or unscannable')
  t.same(problems.wrong, [], 'every verdict matches the content')

  const cleanIds = new Set([...tracked].filter(([, i]) => i.kind === 'clean').map(([id]) => id))
  const infectedIds = new Set([...tracked].filter(([, i]) => i.kind !== 'clean').map(([id]) => id))
  // Every check here holds for a run that accepted nothing: it must have accepted both kinds.
  t.ok(cleanIds.size > 0 && infectedIds.size > 0, `the run accepted clean and infected uploads (${cleanIds.size} and ${infectedIds.size})`)
  const production = await listKeys(s3, PRODUCTION)
  const quarantine = await listKeys(s3, QUARANTINE)
  t.same(production.filter((k) => !cleanIds.has(k)), [], 'production holds no upload but clean ones')
  t.same([...infectedIds].filter((id) => !quarantine.includes(id)), [], 'every infected upload is still in quarantine')
  const badCopies: string[] = []
  await forEachLimit([...cleanIds], 8, async (id) => {
    const sha = await objectSha256(s3, PRODUCTION, id)
    if (sha !== tracked.get(id)?.sha256) badCopies.push(`${id}: ${sha ?? 'missing'}`)
    else if ((await objectTags(s3, PRODUCTION, id))['av-status'] !== 'clean') badCopies.push(`${id}: not tagged av-status=clean`)
  })
  t.same(badCopies, [], 'every clean upload is in production with its exact bytes, tagged clean')

  const { rows } = await pgQuery<{ upload_id: string; scans: string; errors: string; outcomes: string[] | null; verdicts: string }>(
    `SELECT upload_id, count(*) AS scans, count(*) FILTER (WHERE outcome = 'error') AS errors,
            count(*) FILTER (WHERE outcome <> 'error') AS verdicts,
            array_agg(DISTINCT outcome) FILTER (WHERE outcome <> 'error') AS outcomes
       FROM "${schema}".scans GROUP BY upload_id`
  )
  const byUpload = new Map(rows.map((r) => [r.upload_id, r]))
  const audit: string[] = []
  for (const [id, item] of tracked) {
    const outcomes = byUpload.get(id)?.outcomes ?? []
    const expected = item.kind === 'clean' ? 'clean' : 'infected'
    if (outcomes.length !== 1 || outcomes[0] !== expected) audit.push(`${id} (${item.kind}): verdicts ${JSON.stringify(outcomes)}`)
  }
  t.same(audit, [], 'each upload was scanned to one verdict, the right one (a clean scan behind every promotion)')
  return {
    maxScans: Math.max(0, ...rows.map((r) => Number(r.scans))),
    errorRows: rows.reduce((n, r) => n + Number(r.errors), 0),
    rescanned: rows.filter((r) => Number(r.verdicts) > 1).length,
    strays: quarantine.filter((k) => !infectedIds.has(k))
  }
}
