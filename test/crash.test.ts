import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { HeadObjectCommand } from '@aws-sdk/client-s3'
import t from 'tap'
import { listKeys, objectSha256, objectTags, sha256 } from './helpers/bucket-checks.ts'
import { startChildGateway, type ChildGateway } from './helpers/child-gateway.ts'
import { startClamd } from './helpers/clamd.ts'
import { MiB, PRODUCTION, QUARANTINE, s3PgEnv } from './helpers/gateway-env.ts'
import { createBuckets, listIncompleteUploads, s3ClientFor, startMoto } from './helpers/moto.ts'
import { freshSchema, pgQuery } from './helpers/postgres.ts'
import { contentOf, forEachLimit, sendUpload, signatureOf, TERMINAL, waitAllTerminal, type Kind } from './helpers/upload-load.ts'
import { exitWhenDone } from './helpers/exit-guard.ts'

exitWhenDone()

// Crash test: three gateways on one PostgreSQL schema, one moto and one real clamd, while a chaos
// loop SIGKILLs one of them every 0.5-2 s and starts a replacement. Whatever a kill interrupts
// (an upload, a scan, a promotion), no infected byte may reach production, no accepted upload may
// be lost, and every one must end with the verdict its content deserves.
const UPLOADS = 300
const SEND_CONCURRENCY = 8
const POOL_SIZE = 3
const KILLS_AFTER_SENDING = 3
/** How long the chaos may go on once sending has ended (sending itself is bounded by its timeouts). */
const CHAOS_MAX_MS = 60_000
const SETTLE_MAX_MS = 60_000

interface Item {
  n: number
  kind: Kind
  size: number
  sha256: string
  /** accepted: got 202. crash: the gateway asked was killed before it answered. */
  state: 'queued' | 'in-flight' | 'accepted' | 'crash' | 'refused'
  id?: string
}

interface Proc {
  n: number
  gw: ChildGateway
  /** Killed by the chaos loop (or at the end); any other exit is a failure. */
  dead: boolean
}

/** Half small clean files, a tenth large ones (some above the 5 MiB part size: multipart), a fifth each EICAR and marker. */
function plan(n: number): { kind: Kind; size: number } {
  const r = n % 10
  const between = (lo: number, hi: number): number => Math.floor(lo + Math.random() * (hi - lo))
  if (r < 5) return { kind: 'clean', size: between(1024, 64 * 1024) }
  if (r === 5) return { kind: 'clean', size: n % 40 === 5 ? between(5.2 * MiB, 6 * MiB) : between(1.2 * MiB, 2 * MiB) }
  return { kind: r < 8 ? 'eicar' : 'marker', size: between(100, 32 * 1024) }
}

t.test('SIGKILL chaos over three gateways: nothing lost, nothing infected promoted, every verdict right', async (t) => {
  const startedAt = Date.now()
  const [moto, clamd] = await Promise.all([startMoto(), startClamd()])
  t.teardown(() => Promise.all([moto.stop(), clamd.stop()]))
  await createBuckets(moto.endpoint, QUARANTINE, PRODUCTION)
  const s3 = s3ClientFor(moto.endpoint)
  t.teardown(() => s3.destroy())
  const schema = await freshSchema(t)
  const env = {
    ...s3PgEnv({ s3Endpoint: moto.endpoint, schema, clamd: clamd.url }),
    GW_ROLE: 'all',
    GW_SCAN_CONCURRENCY: '4',
    GW_SCAN_LEASE_MS: '2000',
    // Every kill mid-scan costs a try: the budget must outlast the chaos.
    GW_SCAN_MAX_ATTEMPTS: '20',
    GW_SHUTDOWN_GRACE_MS: '1000',
    // Uploads cut off by a kill are removed by the surviving gateways' sweepers once this old
    // (well above the slowest upload here, so no upload in flight is taken for an orphan).
    GW_ORPHAN_AFTER: '30s',
    GW_ORPHAN_SWEEP_INTERVAL_MS: '500'
  }

  const violations: string[] = []
  const unexpected: string[] = []

  // --- the pool of gateway processes ---
  const live: Proc[] = []
  const exits: Promise<unknown>[] = []
  let spawned = 0
  const spawn = async (): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      try {
        const proc: Proc = { n: ++spawned, gw: await startChildGateway(t, env), dead: false }
        proc.gw.child.once('exit', (code, signal) => {
          if (!proc.dead) unexpected.push(`gateway ${proc.n} exited by itself (${code ?? signal}): ${proc.gw.output().slice(-2000)}`)
        })
        live.push(proc)
        return
      } catch (err) {
        if (attempt >= 3) throw err
      }
    }
  }
  const kill = (proc: Proc): void => {
    proc.dead = true // before the signal: a request failing because of it is then known as a crash
    live.splice(live.indexOf(proc), 1)
    exits.push(once(proc.gw.child, 'exit'))
    proc.gw.child.kill('SIGKILL')
  }
  const anyLive = async (): Promise<Proc> => {
    for (;;) {
      const proc = live[Math.floor(Math.random() * live.length)]
      if (proc) return proc
      await sleep(20)
    }
  }
  await Promise.all(Array.from({ length: POOL_SIZE }, spawn))
  t.comment(`${POOL_SIZE} gateways up after ${Date.now() - startedAt} ms`)

  // --- what was sent: by content hash (unique per upload) and, once accepted, by id ---
  const items: Item[] = Array.from({ length: UPLOADS }, (_, n) => ({ n, ...plan(n), sha256: '', state: 'queued' as const }))
  const bySha = new Map<string, Item>()
  const byId = new Map<string, Item>()
  /** Uploads committed by a gateway that was killed before its 202 reached us (found in production or in the state store). */
  const lostAcks = new Map<string, Item>()

  // --- the production watcher: only known clean bytes, under their own key, may ever appear ---
  const settledKeys = new Set<string>()
  const prodSha = new Map<string, string | null>()
  let watchRounds = 0
  // Kept, not just counted: a watcher that cannot read the bucket checks nothing, and must fail the test.
  let watchErrors = 0
  const firstWatchErrors: string[] = []
  const watchOnce = async (): Promise<void> => {
    for (const key of await listKeys(s3, PRODUCTION)) {
      if (settledKeys.has(key)) continue
      const tracked = byId.get(key)
      if (tracked && tracked.kind !== 'clean') {
        violations.push(`production holds ${key}, a ${tracked.kind} upload`)
        settledKeys.add(key)
        continue
      }
      if (!prodSha.has(key)) prodSha.set(key, await objectSha256(s3, PRODUCTION, key))
      const sha = prodSha.get(key)
      const item = sha ? bySha.get(sha) : undefined
      if (!sha) violations.push(`production/${key} was listed, then could not be read`)
      else if (!item) violations.push(`production/${key} holds bytes the test never sent`)
      else if (item.kind !== 'clean') violations.push(`production/${key} holds the bytes of a ${item.kind} upload (#${item.n})`)
      else if (item.state === 'in-flight') continue // scanned and promoted before its 202 reached us: look again
      else if (item.state === 'crash' && item.id === undefined) lostAcks.set(key, item)
      else if (item.id !== key) violations.push(`production/${key} holds the bytes of upload #${item.n} (${item.id ?? item.state})`)
      settledKeys.add(key)
    }
  }
  let watching = true
  const watcher = (async () => {
    while (watching) {
      try {
        await watchOnce()
        watchRounds++
      } catch (err) {
        if (++watchErrors <= 3) firstWatchErrors.push(`round ${watchRounds + watchErrors}: ${String(err)}`)
      }
      await sleep(200)
    }
  })()

  // --- the chaos loop ---
  let sendingDone = false
  let kills = 0
  let killsAfterSending = 0
  const chaos = (async () => {
    // Measured from the end of sending: on a slow machine sending outlasted a fixed budget, and
    // the kills meant to hit the scans and promotions that follow it never happened.
    let until = Infinity
    const restarts: Promise<void>[] = []
    while (Date.now() < until && !(sendingDone && killsAfterSending >= KILLS_AFTER_SENDING)) {
      if (sendingDone && until === Infinity) until = Date.now() + CHAOS_MAX_MS
      await sleep(500 + Math.random() * 1500)
      if (live.length < 2) continue // leave one to take uploads while the others restart
      kill(live[Math.floor(Math.random() * live.length)] as Proc)
      kills++
      if (sendingDone) killsAfterSending++
      restarts.push(spawn())
    }
    await Promise.all(restarts)
  })()

  // --- the uploads ---
  const sendStarted = Date.now()
  let maxUploadMs = 0
  await forEachLimit(items, SEND_CONCURRENCY, async (item) => {
    let data: Buffer | null = contentOf(item.kind, item.size)
    item.sha256 = sha256(data)
    bySha.set(item.sha256, item)
    const proc = await anyLive()
    item.state = 'in-flight'
    try {
      const res = await sendUpload(proc.gw.url, data, { timeoutMs: 30_000 })
      maxUploadMs = Math.max(maxUploadMs, res.ms)
      if (res.status === 202 && res.json.sha256 === item.sha256) {
        item.id = String(res.json.id)
        byId.set(item.id, item)
        item.state = 'accepted'
      } else {
        item.state = 'refused'
        unexpected.push(`upload #${item.n} to gateway ${proc.n}: HTTP ${res.status} ${JSON.stringify(res.json)}`)
      }
    } catch (err) {
      if (proc.dead) item.state = 'crash'
      else {
        item.state = 'refused'
        unexpected.push(`upload #${item.n}: no answer from gateway ${proc.n}, which is alive: ${String(err)}`)
      }
    }
    data = null
  })
  sendingDone = true
  const watchRoundsWhileSending = watchRounds
  const sendMs = Date.now() - sendStarted
  await chaos
  await Promise.all(exits)
  t.comment(`sending took ${sendMs} ms; chaos ended after ${kills} kills; ${live.length} gateways live`)
  t.equal(live.length, POOL_SIZE, 'the pool is back at full size')
  t.ok(kills > killsAfterSending, `gateways were killed while uploads were sent (${kills - killsAfterSending})`)
  t.ok(killsAfterSending > 0, `and after sending ended, while the last scans and promotions ran (${killsAfterSending})`)

  // --- uploads committed whose 202 was lost with the process: they are real uploads too ---
  const { rows: records } = await pgQuery<{ id: string; sha256: string }>(`SELECT id, sha256 FROM "${schema}".uploads`)
  const recorded = new Set<string>()
  for (const { id, sha256: sha } of records) {
    recorded.add(id)
    const item = byId.get(id) ?? bySha.get(sha)
    if (!item || item.sha256 !== sha) violations.push(`record ${id} matches no upload the test sent`)
    else if (item.id === undefined && item.state === 'crash') lostAcks.set(id, item)
    else if (item.id !== id) violations.push(`record ${id} holds the bytes of upload #${item.n} (${item.id})`)
  }
  const accepted = items.filter((i) => i.state === 'accepted')
  for (const item of accepted) if (!recorded.has(item.id as string)) violations.push(`upload #${item.n} got 202 as ${item.id} but has no record`)
  const tracked = new Map<string, Item>([...accepted.map((i) => [i.id as string, i] as const), ...lostAcks])

  // --- let everything settle, polling through whichever gateway is alive ---
  const settleStarted = Date.now()
  const views = await waitAllTerminal(() => (live[Math.floor(Math.random() * live.length)] as Proc).gw.url, [...tracked.keys()], {
    timeoutMs: SETTLE_MAX_MS
  })
  const settleMs = Date.now() - settleStarted
  watching = false
  await watcher
  const checkedWhileRunning = settledKeys.size
  await watchOnce() // one last look now that nothing moves
  // The final look sees only the end state, which the bucket checks below see too: the watcher is
  // worth something only if it looked while uploads, kills and promotions were going on.
  t.equal(watchErrors, 0, `the production watcher could read the production bucket on every round ${firstWatchErrors.join('; ')}`)
  t.ok(watchRoundsWhileSending > 0, `the production watcher completed rounds while uploads were sent (${watchRoundsWhileSending})`)
  t.ok(checkedWhileRunning > 0, `the production watcher checked promoted objects before the end (${checkedWhileRunning})`)

  // --- verdicts ---
  const notTerminal: string[] = []
  const wrong: string[] = []
  const failedOrUnscannable: string[] = []
  for (const [id, item] of tracked) {
    const view = views.get(id)
    if (!TERMINAL.includes(view?.status)) {
      notTerminal.push(`${id} (#${item.n} ${item.kind}): ${view?.status ?? 'never answered'}`)
      continue
    }
    if (view.status === 'failed' || view.status === 'unscannable') failedOrUnscannable.push(`${id} (#${item.n} ${item.kind}): ${JSON.stringify(view)}`)
    else if (item.kind === 'clean' && view.status !== 'clean') wrong.push(`${id} clean upload is ${view.status}`)
    else if (item.kind !== 'clean' && !(view.status === 'infected' && signatureOf[item.kind].test(view.verdict?.signature ?? '')))
      wrong.push(`${id} ${item.kind} upload is ${view.status} (${view.verdict?.signature})`)
  }
  t.same(notTerminal, [], 'every upload reached a terminal status')
  t.same(failedOrUnscannable, [], 'none failed (try budget) or unscannable')
  t.same(wrong, [], 'every verdict matches the content: clean, EICAR or marker')

  // --- the buckets ---
  const cleanIds = [...tracked].filter(([, i]) => i.kind === 'clean').map(([id]) => id)
  const infectedIds = [...tracked].filter(([, i]) => i.kind !== 'clean').map(([id]) => id)
  // --- the sweep: what a kill left in quarantine goes once older than GW_ORPHAN_AFTER (bounded wait) ---
  const sweepStarted = Date.now()
  const infectedNow = new Set(infectedIds)
  const leftByKills = async (): Promise<number> =>
    (await listKeys(s3, QUARANTINE)).filter((k) => !infectedNow.has(k)).length +
    (await listIncompleteUploads(s3, QUARANTINE)).length
  const leftBeforeSweep = await leftByKills()
  for (let i = 0; i < 120 && (await leftByKills()) > 0; i++) await sleep(500)
  t.comment(`sweep: ${leftBeforeSweep} objects and open multipart uploads left by kills when settled, swept in ${Date.now() - sweepStarted} ms`)

  const prodKeys = new Set(await listKeys(s3, PRODUCTION))
  const quarantineKeys = new Set(await listKeys(s3, QUARANTINE))
  const badProduction: string[] = []
  await forEachLimit(cleanIds, 8, async (id) => {
    const sha = await objectSha256(s3, PRODUCTION, id)
    if (sha !== tracked.get(id)?.sha256) badProduction.push(`${id}: sha256 ${sha ?? 'missing'}`)
    else if ((await objectTags(s3, PRODUCTION, id))['av-status'] !== 'clean') badProduction.push(`${id}: not tagged av-status=clean`)
  })
  t.same(badProduction, [], 'every clean upload is in production with its exact bytes, tagged clean')
  t.same(
    infectedIds.filter((id) => prodKeys.has(id)),
    [],
    'no infected upload is in production'
  )
  t.same([...prodKeys].filter((k) => tracked.get(k)?.kind !== 'clean'), [], 'production holds clean uploads only')
  const badQuarantineTags: string[] = []
  await forEachLimit(infectedIds, 8, async (id) => {
    if (!quarantineKeys.has(id)) badQuarantineTags.push(`${id}: not in quarantine`)
    else if ((await objectTags(s3, QUARANTINE, id))['av-status'] !== 'infected') badQuarantineTags.push(`${id}: not tagged av-status=infected`)
  })
  t.same(badQuarantineTags, [], 'every infected upload stays in quarantine, tagged infected')

  // Left in quarantine besides infected uploads: nothing. Objects stored by a gateway killed before it
  // committed their record (nobody was told 202) were found by their intents and swept.
  const infectedSet = new Set(infectedIds)
  const orphans: string[] = []
  const strays: string[] = []
  for (const key of quarantineKeys) {
    if (infectedSet.has(key)) continue
    const head = await s3.send(new HeadObjectCommand({ Bucket: QUARANTINE, Key: key }))
    const item = bySha.get((await objectSha256(s3, QUARANTINE, key)) ?? '')
    if (!recorded.has(key) && item?.state === 'crash' && head.Metadata?.['upload-id'] === key) orphans.push(`${key} (#${item.n} ${item.kind}, ${item.size} bytes)`)
    else strays.push(`${key}: ${item ? `#${item.n} ${item.kind} ${item.state}` : 'unknown bytes'}, record: ${recorded.has(key)}`)
  }
  t.same(strays, [], 'quarantine holds the infected uploads and nothing else (but kill orphans)')
  t.same(orphans, [], 'no object left in quarantine without a record: the sweeper removed what kills left')

  const incomplete = await listIncompleteUploads(s3, QUARANTINE, PRODUCTION)
  t.same(
    incomplete.filter((u) => u.bucket === PRODUCTION),
    [],
    'no incomplete multipart upload in production'
  )
  const incompleteQuarantine = incomplete.filter((u) => u.bucket === QUARANTINE)
  t.same(incompleteQuarantine, [], 'no incomplete multipart upload in quarantine: the sweeper aborted what kills left')

  // --- the audit trail: scans per upload, and no verdict against the content ---
  const { rows: scanRows } = await pgQuery<{ upload_id: string; scans: string; verdicts: string; outcomes: string[] }>(
    `SELECT upload_id, count(*) AS scans, count(*) FILTER (WHERE outcome <> 'error') AS verdicts,
            array_agg(DISTINCT outcome) FILTER (WHERE outcome <> 'error') AS outcomes
       FROM "${schema}".scans GROUP BY upload_id`
  )
  const contradicting = scanRows.filter((r) => {
    const item = tracked.get(r.upload_id)
    const expected = item?.kind === 'clean' ? 'clean' : 'infected'
    return (r.outcomes ?? []).some((o) => o !== expected)
  })
  t.same(contradicting, [], 'no scan of any upload ever gave a verdict other than its content deserves')
  const maxScans = Math.max(0, ...scanRows.map((r) => Number(r.scans)))
  const maxVerdicts = Math.max(0, ...scanRows.map((r) => Number(r.verdicts)))
  const rescanned = scanRows.filter((r) => Number(r.verdicts) > 1).length

  t.same(violations, [], 'the production watcher and the record check found nothing wrong')
  t.same(unexpected, [], 'no gateway refused an upload or died by itself')

  const count = (state: Item['state']): number => items.filter((i) => i.state === state).length
  const cleanCount = cleanIds.length
  t.comment(`uploads: sent ${UPLOADS - count('queued')}, accepted ${count('accepted')}, refused by a crash ${count('crash')} (of which committed anyway: ${lostAcks.size}), other refusals ${count('refused')}`)
  t.comment(`gateways: ${kills} kills (${killsAfterSending} after sending ended), ${spawned} processes started in all`)
  t.comment(`verdicts: ${cleanCount} clean, ${infectedIds.length} infected (${[...tracked.values()].filter((i) => i.kind === 'eicar').length} EICAR, ${[...tracked.values()].filter((i) => i.kind === 'marker').length} marker)`)
  t.comment(`scans per upload: max ${maxScans} tries, max ${maxVerdicts} verdicts; ${rescanned} uploads scanned to a verdict more than once (a kill after the scan, before it was recorded)`)
  t.comment(`quarantine: ${orphans.length} objects orphaned by a kill between store and commit${orphans.length ? `: ${orphans.join(', ')}` : ''}`)
  t.comment(`incomplete multipart uploads left in quarantine by killed gateways: ${incompleteQuarantine.length}${incompleteQuarantine.length ? ` (${incompleteQuarantine.map((u) => `${u.key} ${u.bytes} B`).join(', ')})` : ''}`)
  t.comment(`production watcher: ${watchRounds} rounds (${watchRoundsWhileSending} while sending), ${watchErrors} errors, ${settledKeys.size} objects checked; slowest upload ${maxUploadMs} ms`)
  t.comment(`time: sending ${sendMs} ms, settling ${settleMs} ms, total ${Date.now() - startedAt} ms`)
  for (const proc of live) proc.dead = true // the teardown's SIGKILL is expected
})
