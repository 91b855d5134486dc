import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { sqliteStateStore } from '../src/adapters/state-store/open-state-store.ts'
import type { Claim, StatusChange } from '../src/ports/job-queue.ts'
import { handedOn, jobKindOf } from '../src/services/job-kind.ts'
import { applyChange } from '../src/services/transition.ts'
import { uploadRecord } from './helpers/fake-ports.ts'

const claimOf = (status: Claim['upload']['status'], kind: Claim['kind']): Claim => ({ upload: uploadRecord({ id: 'u', status }), owner: 'w', token: 't', kind })

t.test('the kind of a job: the status of a step of the flow first, then the claim', async (t) => {
  const table: [Claim['upload']['status'], Claim['kind'], string][] = [
    ['scanning', 'scan', 'scan'],
    ['clean', 'rescan', 'rescan'],
    ['infected', 'rescan', 'rescan'],
    ['promoting', 'scan', 'promote'],
    ['requarantining', 'scan', 'requarantine'],
    // A rescan that found something goes on as a requarantine under the same lease.
    ['requarantining', 'rescan', 'requarantine']
  ]
  for (const [status, kind, expected] of table) t.equal(jobKindOf(claimOf(status, kind)), expected, `${status} claimed as ${kind}`)
})

t.test('a change hands the job on only to another step', async (t) => {
  t.match(handedOn(claimOf('scanning', 'scan'), { status: 'promoting', resetAttempts: true }, 1), { kind: 'scan', upload: { status: 'promoting', attempts: 0 } })
  t.match(handedOn(claimOf('clean', 'rescan'), { status: 'requarantining' }, 1), { kind: 'scan', upload: { status: 'requarantining' } }, 'its lease is now in runAt')
  t.equal(handedOn(claimOf('scanning', 'scan'), { status: 'infected' }, 1), null, 'a verdict ends the job')
  t.equal(handedOn(claimOf('promoting', 'scan'), { status: 'promoting' }, 1), null, 'a retry is not run again at once')
  t.equal(handedOn(claimOf('clean', 'rescan'), { status: 'clean' }, 1), null)
})

t.test('a change applied in memory gives the record the store writes', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'gw-apply-'))
  const state = sqliteStateStore(join(dir, 'state.db'))
  await state.migrate()
  t.teardown(async () => {
    await state.close()
    await rm(dir, { recursive: true, force: true })
  })
  const verdict = { result: 'infected', signature: 'Sig', reason: null, engine: 'ClamAV', signatureVersion: 3 } as const
  // Lease ends and retries in the future, so that each claim below takes the next upload.
  const later = Date.now() + 60_000
  const changes: StatusChange[] = [
    { status: 'promoting', verdict: { ...verdict, result: 'clean', signature: null }, scannedAt: 5, scannedVersion: 'v1', lastError: null, resetAttempts: true, runAt: later },
    { status: 'pending', lastError: 'Error: boom', refundAttempt: true, runAt: later },
    { status: 'failed', lastError: 'Error: boom', failedRetryAt: 99 },
    { status: 'requarantining', verdict, scannedAt: 7, size: 3, sha256: 'f'.repeat(64), runAt: later },
    { status: 'infected', verdict, nextScanAt: null, resetAttempts: true }
  ]
  for (const [i, change] of changes.entries()) {
    const id = `upload-${i}`
    await state.insertUpload({ id, objectKey: id, size: 1, sha256: 'a'.repeat(64), filename: null, contentType: 'text/plain', createdAt: 1 })
    const [claim] = await state.claim('w', 1, 60_000, Date.now())
    const now = Date.now()
    t.ok(await state.update(claim!, change, now), `${change.status} written`)
    const stored = (await state.getUpload(id))!
    // Lease ends are kept on the store's clock: compared apart, to the millisecond they may differ.
    const { runAt, ...applied } = applyChange(claim!.upload, change, now)
    const { runAt: storedRunAt, ...rest } = stored
    t.strictSame(applied, rest, `${change.status} in memory as in the store`)
    t.ok(Math.abs(runAt - storedRunAt) < 1000, 'the same lease end')
  }
})
