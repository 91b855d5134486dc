import t from 'tap'
import { ScannerError } from '../src/ports/scanner.ts'
import { assertFenced, clean, content, infected, setup } from './helpers/job-runner-rig.ts'
import { sha256Of } from './helpers/fake-ports.ts'

// Every branch of the job runner for stored objects (rescans, adopted objects, requarantines), on
// in-memory ports.

t.test('a rescan of a clean production object schedules the next one', async (t) => {
  const { jobs, objects, scanner, add, run, eventTypes } = setup()
  const { id } = add({ status: 'clean', location: 'production', verdict: clean, nextScanAt: 0 })
  scanner.answer({ result: 'clean' })
  t.equal(await run('rescans'), 'done')
  const after = jobs.get(id)
  t.match(after, { status: 'clean', location: 'production' })
  t.ok(after.nextScanAt! > Date.now() + 3_000_000, 'next rescan in an hour')
  t.match(objects.tagsOf('production', id), { 'av-status': 'clean' })
  t.same(jobs.rescanOutcomes, [{ uploadId: id, outcome: 'clean' }])
  t.same(eventTypes(), [], 'no news')
})

t.test('a rescan that finds a detection hands the job on to the requarantine', async (t) => {
  const { jobs, objects, scanner, journal, add, run, eventTypes } = setup()
  const { id } = add({ status: 'clean', location: 'production', verdict: clean, nextScanAt: 0 })
  scanner.answer({ result: 'infected', signature: 'Eicar-Signature' })
  t.equal(await run('rescans'), 'done')
  t.match(jobs.get(id), { status: 'infected', location: 'quarantine', verdict: infected, nextScanAt: null })
  t.equal(await objects.head('production', id), null, 'out of production')
  t.match(objects.tagsOf('quarantine', id), { 'av-status': 'infected' })
  t.same(eventTypes(), ['object.requarantined', 'upload.infected'])
  t.same(jobs.rescanOutcomes, [{ uploadId: id, outcome: 'infected' }])
  assertFenced(t, journal)
})

t.test('a released upload found with the verdict it was released with stays in production', async (t) => {
  const { jobs, objects, scanner, log, add, run } = setup()
  const released = { by: 'ops', at: 1, reason: 'false positive', status: 'infected' as const, signature: 'Eicar-Signature' }
  const { id } = add({ status: 'clean', location: 'production', verdict: clean, nextScanAt: 0, released })
  scanner.answer({ result: 'infected', signature: 'Eicar-Signature' })
  await run('rescans')
  t.match(jobs.get(id), { status: 'clean', location: 'production', released })
  t.ok(await objects.head('production', id))
  t.ok(log.lines.some((l) => l.includes('left in production')))
})

t.test('a rescan of a stored detection keeps it, whatever it finds, and repairs its tag', async (t) => {
  const { jobs, objects, scanner, add, run } = setup()
  const { id } = add({ status: 'infected', verdict: infected, nextScanAt: 0 })
  scanner.answer({ result: 'clean' })
  await run('rescans')
  t.match(jobs.get(id), { status: 'infected', verdict: infected, nextScanAt: null })
  t.match(objects.tagsOf('quarantine', id), { 'av-status': 'infected', 'av-signature': 'Eicar-Signature' })
  t.same(jobs.rescanOutcomes, [{ uploadId: id, outcome: 'clean' }])
})

t.test('a rescan that fails keeps the verdict and waits its turn', async (t) => {
  const { jobs, scanner, add, run } = setup()
  const { id } = add({ status: 'clean', location: 'production', verdict: clean, nextScanAt: 0 })
  scanner.answer(new ScannerError('protocol', 'garbage'))
  await run('rescans')
  t.match(jobs.get(id), { status: 'clean', verdict: clean, lastError: 'ScannerError: garbage' })
})

t.test("an adopted object's first scan: clean in place, its size and hash learnt", async (t) => {
  const { jobs, objects, scanner, add, run, eventTypes } = setup()
  const { id } = add({ location: 'production', size: 0, sha256: sha256Of('') })
  scanner.answer({ result: 'clean' })
  await run('adopted')
  t.match(jobs.get(id), { status: 'clean', location: 'production', size: content.length, sha256: sha256Of(content) })
  t.match(objects.tagsOf('production', id), { 'av-status': 'clean' })
  t.same(eventTypes(), ['upload.clean'])
})

t.test('an adopted object that cannot be scanned is taken out of production as unscannable', async (t) => {
  const { jobs, scanner, add, run } = setup()
  const { id } = add({ location: 'production', attempts: 2 })
  scanner.answer(new ScannerError('engine_error', 'clamd broke'))
  await run('adopted')
  t.match(jobs.get(id), { status: 'requarantining', verdict: { result: 'unscannable', reason: /could not be scanned/ } })
})

t.test('a requarantine claimed on its own, in tag mode, tags the object where it is', async (t) => {
  const { jobs, objects, add, run, eventTypes } = setup({ mode: 'tag' })
  const { id } = add({ status: 'requarantining', location: 'production', verdict: infected })
  t.equal(await run(), 'done')
  t.match(jobs.get(id), { status: 'infected', location: 'production' })
  t.match(objects.tagsOf('production', id), { 'av-status': 'infected' })
  t.same(eventTypes(), ['object.requarantined', 'upload.infected'])
})

t.test('a requarantine that fails is retried', async (t) => {
  const { jobs, objects, add, run } = setup()
  const { id } = add({ status: 'requarantining', location: 'production', verdict: infected })
  objects.failNext('copy', new Error('copy refused'))
  await run()
  t.match(jobs.get(id), { status: 'requarantining', lastError: 'Error: copy refused' })
  t.ok(await objects.head('production', id), 'still to be taken out')
})
