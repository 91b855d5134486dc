import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { pino } from 'pino'
import { FsObjectStore } from '../src/adapters/object-store/fs-object-store.ts'
import { sqliteStateStore } from '../src/adapters/state-store/open-state-store.ts'
import type { Claim } from '../src/ports/job-queue.ts'
import type { Verdict } from '../src/ports/upload-record.ts'
import { PromoteStep } from '../src/services/promote-step.ts'
import { RescanPolicy } from '../src/services/rescan-policy.ts'
import { UploadEvents } from '../src/services/upload-events.ts'
import { uniqueContent } from './helpers/multipart.ts'
import { RecordingMetrics } from './helpers/recording-metrics.ts'

// Promotion is re-run after a crash at any point between its steps and must end the same way.
const log = pino({ level: 'silent' })
const signal = new AbortController().signal
const clean: Verdict = { result: 'clean', signature: null, reason: null, engine: 'ClamAV 1.4.6', signatureVersion: null }

async function setup(t: Test) {
  const dir = await mkdtemp(join(tmpdir(), 'gw-promote-'))
  const objects = new FsObjectStore({ root: join(dir, 'objects') })
  const state = sqliteStateStore(join(dir, 'state.db'))
  await state.migrate()
  t.teardown(async () => {
    await state.close()
    await rm(dir, { recursive: true, force: true })
  })
  const content = uniqueContent(5000)
  const id = 'ab'.repeat(16)
  await objects.put('quarantine', id, Readable.from([content]), { contentType: 'text/plain', metadata: { 'upload-id': id } })
  await state.insertUpload({ id, objectKey: id, size: content.length, sha256: 'x'.repeat(64), filename: null, contentType: 'text/plain', createdAt: 1 })
  const [claim] = await state.claim('w', 1, 60_000, Date.now())
  const scannedVersion = (await objects.head('quarantine', id))!.version
  await state.update(claim!, { status: 'promoting', verdict: clean, scannedAt: Date.now(), scannedVersion, resetAttempts: true }, Date.now())
  const promoting: Claim = { ...claim!, upload: { ...claim!.upload, status: 'promoting', verdict: clean, scannedAt: Date.now(), scannedVersion } }
  const metrics = new RecordingMetrics()
  const deps = { objects, jobs: state, metrics, rescans: new RescanPolicy({ intervalMs: 60_000, jitter: 0 }), events: new UploadEvents(false) }
  return { objects, state, id, content, promoting, metrics, promote: new PromoteStep(deps, { leaseMs: 60_000 }) }
}

t.test('a crash after the copy: re-running finishes the move', async (t) => {
  const { objects, state, id, promoting, promote, metrics } = await setup(t)
  await objects.copy('quarantine', 'production', id, { 'av-status': 'clean', 'av-upload-id': id })
  await promote.run(promoting, signal, log)
  t.equal((await state.getUpload(id))?.status, 'clean')
  t.same(metrics.events, ['promotion:promoted'])
  t.equal(await objects.head('quarantine', id), null)
  t.equal((await objects.head('production', id))?.size, 5000)
})

t.test('a crash after the quarantine delete: the production copy is recognised', async (t) => {
  const { objects, state, id, promoting, promote } = await setup(t)
  await objects.copy('quarantine', 'production', id, { 'av-status': 'clean', 'av-upload-id': id })
  await objects.delete('quarantine', id)
  await promote.run(promoting, signal, log)
  t.equal((await state.getUpload(id))?.status, 'clean')
})

t.test('an object that is in neither place is not reported clean', async (t) => {
  const { objects, state, id, promoting, promote, metrics } = await setup(t)
  await objects.delete('quarantine', id)
  await t.rejects(promote.run(promoting, signal, log), { name: 'ObjectNotFoundError' })
  t.equal((await state.getUpload(id))?.status, 'promoting')
  t.same(metrics.events, ['promotion:error'])
})

t.test('a production object of another upload is not taken for ours', async (t) => {
  const { objects, state, id, promoting, promote } = await setup(t)
  await objects.copy('quarantine', 'production', id, { 'av-status': 'clean', 'av-upload-id': 'someone-else' })
  await objects.delete('quarantine', id)
  await t.rejects(promote.run(promoting, signal, log), { name: 'ObjectNotFoundError' })
  t.equal((await state.getUpload(id))?.status, 'promoting')
})

t.test('bytes changed in quarantine after the scan are never promoted', async (t) => {
  const { objects, state, id, promoting, promote, metrics } = await setup(t)
  await new Promise((r) => setTimeout(r, 5))
  await objects.put('quarantine', id, Readable.from([uniqueContent(5000)]), { contentType: 'text/plain', metadata: { 'upload-id': id } })
  await promote.run(promoting, signal, log)
  t.match(await state.getUpload(id), { status: 'failed', lastError: /changed after it was scanned/ })
  t.equal(await objects.head('production', id), null, 'nothing in production')
  t.match(await objects.getTags('quarantine', id), { 'av-status': 'failed' })
  t.same(metrics.events, ['promotion:changed'])
})

t.test('bytes changed after an earlier try had copied them: the failed upload keeps no production copy', async (t) => {
  const { objects, state, id, promoting, promote } = await setup(t)
  await objects.copy('quarantine', 'production', id, { 'av-status': 'clean', 'av-upload-id': id })
  await new Promise((r) => setTimeout(r, 5))
  await objects.put('quarantine', id, Readable.from([uniqueContent(5000)]), { contentType: 'text/plain', metadata: { 'upload-id': id } })
  await promote.run(promoting, signal, log)
  t.match(await state.getUpload(id), { status: 'failed' })
  t.equal(await objects.head('production', id), null, 'withdrawn from production')
})

t.test('a worker that lost its lease writes nothing to the store', async (t) => {
  const { objects, state, id, promoting, promote } = await setup(t)
  // Another worker claims the upload once the lease is gone.
  const [other] = await state.claim('other', 1, 60_000, Date.now() + 120_000)
  t.equal(other?.upload.id, id)
  await t.rejects(promote.run(promoting, signal, log), { name: 'LeaseLostError' })
  t.equal(await objects.head('production', id), null, 'no copy')
  t.ok(await objects.head('quarantine', id), 'no delete')
})

t.test('nothing without a clean verdict is promoted', async (t) => {
  const { objects, id, promoting, promote } = await setup(t)
  const infected: Verdict = { ...clean, result: 'infected', signature: 'Eicar' }
  await t.rejects(promote.run({ ...promoting, upload: { ...promoting.upload, verdict: infected } }, signal, log), /no clean verdict/)
  await t.rejects(promote.run({ ...promoting, upload: { ...promoting.upload, status: 'scanning' } }, signal, log), /no clean verdict/)
  t.equal(await objects.head('production', id), null)
})
