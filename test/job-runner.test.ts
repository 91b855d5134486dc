import t from 'tap'
import { ScannerError } from '../src/ports/scanner.ts'
import { assertFenced, clean, content, infected, setup } from './helpers/job-runner-rig.ts'
import { sha256Of } from './helpers/fake-ports.ts'

// Every branch of the job runner for an upload's own flow (scan, promotion, retries, leases), on
// in-memory ports: the real-part tests (scan-flow-*, faults, crash, lease-fence) run the same code
// against S3, clamd and the databases. Stored objects: job-runner-stored.test.ts.

t.test('a clean upload is scanned and promoted under the same lease', async (t) => {
  const { jobs, objects, scanHistory, scanner, metrics, journal, add, run, eventTypes } = setup()
  const { id } = add()
  scanner.answer({ result: 'clean' })
  t.equal(await run(), 'done')
  t.match(jobs.get(id), { status: 'clean', location: 'production', verdict: { result: 'clean' }, attempts: 0, lastError: null })
  t.ok(await objects.head('production', id), 'in production')
  t.equal(await objects.head('quarantine', id), null, 'gone from quarantine')
  t.match(objects.tagsOf('production', id), { 'av-status': 'clean', 'av-upload-id': id })
  t.same(eventTypes(), ['upload.clean'])
  t.match(scanHistory.scans, [{ uploadId: id, outcome: 'clean', bytes: content.length, endpoint: 'fake:3310' }])
  t.same(metrics.events, ['scan:clean', 'promotion:promoted'])
  t.same(journal, ['renew held', 'copy quarantine production', 'renew held', 'delete quarantine'])
})

t.test('an infected upload is tagged in quarantine before its status says so', async (t) => {
  const { jobs, objects, scanner, log, journal, add, run, eventTypes } = setup()
  const { id } = add()
  scanner.answer({ result: 'infected', signature: 'Eicar-Signature' })
  t.equal(await run(), 'done')
  t.match(jobs.get(id), { status: 'infected', verdict: infected, location: 'quarantine' })
  t.match(objects.tagsOf('quarantine', id), { 'av-status': 'infected', 'av-signature': 'Eicar-Signature' })
  t.same(eventTypes(), ['upload.infected'])
  t.ok(log.lines.includes('warn: upload infected'))
  assertFenced(t, journal)
})

t.test('a file over the scanner limit is unscannable without asking the scanner', async (t) => {
  const { jobs, scanner, scanHistory, add, run } = setup({ scannerMaxBytes: 5 })
  const { id } = add()
  t.equal(await run(), 'done')
  t.equal(scanner.calls, 0)
  t.match(jobs.get(id), { status: 'unscannable', verdict: { result: 'unscannable', engine: 'not sent to the scanner', reason: /scanner limit of 5 bytes/ } })
  t.match(scanHistory.scans, [{ outcome: 'unscannable', bytes: 0, endpoint: null }])
})

t.test('bytes that are not the ones uploaded are never clean: retried, then failed for good', async (t) => {
  const { jobs, objects, scanner, scanHistory, add, run, eventTypes } = setup()
  const { id } = add({ sha256: sha256Of('other bytes') })
  scanner.answer({ result: 'clean' })
  t.equal(await run(), 'done')
  t.match(jobs.get(id), { status: 'pending', lastError: /IntegrityError: quarantined object does not match/, attempts: 1 })
  t.match(scanHistory.scans, [{ outcome: 'error', detail: /expected 22 bytes/ }])
  jobs.add({ ...jobs.get(id), runAt: 0, attempts: 2 })
  scanner.answer({ result: 'clean' })
  await run()
  t.match(jobs.get(id), { status: 'failed', failedRetryAt: null })
  t.equal(await objects.head('production', id), null, 'never promoted')
  t.match(objects.tagsOf('quarantine', id), { 'av-status': 'failed' })
  t.same(eventTypes(), ['upload.failed'])
})

t.test('an unreachable scanner: the worker is told, the try is not counted', async (t) => {
  const { jobs, scanner, add, run } = setup()
  const { id } = add({ attempts: 5 })
  scanner.answer(new ScannerError('unavailable', 'connection refused'))
  t.equal(await run(), 'scanner-unavailable')
  t.match(jobs.get(id), { status: 'pending', attempts: 5, lastError: 'ScannerError: connection refused' })
  t.ok(jobs.get(id).runAt > Date.now(), 'backed off')
})

t.test('a scan that keeps failing fails, tagged, with an automatic round ahead', async (t) => {
  const { jobs, objects, scanner, journal, add, run, eventTypes } = setup()
  const { id } = add({ attempts: 2 })
  scanner.answer(new ScannerError('idle_timeout', 'stalled'))
  t.equal(await run(), 'done')
  t.match(jobs.get(id), { status: 'failed', lastError: 'ScannerError: stalled' })
  t.ok(jobs.get(id).failedRetryAt! > Date.now() + 3_000_000, 'tried again in an hour')
  t.match(objects.tagsOf('quarantine', id), { 'av-status': 'failed' })
  t.same(jobs.rescanOutcomes, [{ uploadId: id, outcome: 'failed' }])
  t.same(eventTypes(), ['upload.failed'])
  assertFenced(t, journal)
})

t.test('a failed tag does not keep a failure from being recorded', async (t) => {
  const { jobs, objects, scanner, log, add, run } = setup()
  const { id } = add({ attempts: 2 })
  scanner.answer(new Error('store down'))
  objects.failNext('setTags', new Error('tagging refused'))
  await run()
  t.equal(jobs.get(id).status, 'failed')
  t.ok(log.lines.includes('error: could not tag a failed upload'))
})

t.test('a lease lost before tagging a failure: nothing is written', async (t) => {
  const { jobs, objects, scanner, log, add, claim, runner, abort } = setup()
  const { id } = add({ attempts: 2 })
  const c = await claim()
  jobs.steal(id)
  scanner.answer(new Error('store down'))
  t.equal(await runner.run(c, abort.signal, log), 'done')
  t.equal(jobs.get(id).status, 'scanning')
  t.same(objects.tagsOf('quarantine', id), { 'av-upload-id': id }, 'not tagged')
  t.ok(log.lines.some((l) => l.startsWith('warn: lease lost')))
})

t.test('a lease lost before a verdict tag: nothing is written', async (t) => {
  const { jobs, objects, scanner, log, add, claim, runner, abort, journal } = setup()
  const { id } = add()
  const c = await claim()
  jobs.steal(id)
  scanner.answer({ result: 'infected', signature: 'Eicar-Signature' })
  t.equal(await runner.run(c, abort.signal, log), 'done')
  t.equal(jobs.get(id).status, 'scanning')
  t.same(objects.tagsOf('quarantine', id), { 'av-upload-id': id }, 'not tagged')
  t.same(journal, ['renew lost'])
  t.same(log.lines.filter((l) => l.includes('lease lost')), ['warn: lease lost: another worker owns this upload now, result dropped'])
})

t.test('a change fenced off by the store ends the job without handing it on', async (t) => {
  const { jobs, objects, scanner, log, add, claim, runner, abort } = setup()
  const { id } = add()
  const c = await claim()
  jobs.steal(id)
  scanner.answer({ result: 'clean' })
  t.equal(await runner.run(c, abort.signal, log), 'done')
  t.equal(jobs.get(id).status, 'scanning')
  t.equal(await objects.head('production', id), null, 'not promoted')
  t.ok(log.lines.some((l) => l.startsWith('warn: lease lost')))
})

t.test('an aborted job stops and writes nothing', async (t) => {
  const { jobs, add, claim, runner, abort, log } = setup()
  const { id } = add()
  const c = await claim()
  abort.abort(new Error('shutting down'))
  await t.rejects(runner.run(c, abort.signal, log), /shutting down/)
  t.equal(jobs.get(id).status, 'scanning')
})

t.test('a promotion claimed on its own is run by the promote step', async (t) => {
  const { jobs, objects, scanner, add, run, eventTypes } = setup()
  const { id } = add({ status: 'promoting', verdict: clean, scannedAt: 5, scannedVersion: 'scanned' })
  t.equal(await run(), 'done')
  t.equal(scanner.calls, 0, 'not scanned again')
  t.match(jobs.get(id), { status: 'clean', location: 'production' })
  t.ok(await objects.head('production', id))
  t.same(eventTypes(), ['upload.clean'])
})

t.test('a promotion given up withdraws its production copy, then fails', async (t) => {
  const { jobs, objects, journal, metrics, add, run } = setup()
  const { id } = add({ status: 'promoting', verdict: clean, scannedVersion: 'scanned', attempts: 2 })
  objects.failNext('delete', new Error('delete refused'))
  t.equal(await run(), 'done')
  t.match(jobs.get(id), { status: 'failed', lastError: 'Error: delete refused' })
  t.equal(await objects.head('production', id), null, 'withdrawn')
  t.match(objects.tagsOf('quarantine', id), { 'av-status': 'failed' })
  t.same(metrics.events, ['promotion:error'])
  assertFenced(t, journal)
})

t.test('a promotion whose production copy is the only one left is retried, never failed', async (t) => {
  const { jobs, objects, log, add, run } = setup()
  const { id } = add({ status: 'promoting', verdict: clean, scannedVersion: 'scanned', attempts: 2 })
  // Not ours by its tags, so the promotion cannot finish; and no quarantined copy to fall back on.
  objects.store('production', id, content, { 'av-upload-id': 'someone-else' })
  await objects.delete('quarantine', id)
  t.equal(await run(), 'done')
  t.match(jobs.get(id), { status: 'promoting', lastError: /ObjectNotFoundError/ })
  t.ok(await objects.head('production', id), 'left for the next try')
  t.ok(log.lines.includes('error: promotion keeps failing and its production copy cannot be withdrawn; still trying'))
})

t.test('a withdrawal that fails keeps the promotion going', async (t) => {
  const { jobs, objects, log, add, run } = setup()
  const { id } = add({ status: 'promoting', verdict: clean, scannedVersion: 'scanned', attempts: 2 })
  objects.failNext('copy', new Error('copy refused'))
  objects.failNext('delete', new Error('delete refused'))
  await run()
  t.equal(jobs.get(id).status, 'promoting')
  t.ok(log.lines.includes('error: could not withdraw the production copy of a failed promotion'))
})
