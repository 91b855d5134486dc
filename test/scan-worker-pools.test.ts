import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { ScannerError } from '../src/ports/scanner.ts'
import { ScanWorker, type WorkerOptions } from '../src/services/scan-worker.ts'
import { clean, leaseMs, setup } from './helpers/job-runner-rig.ts'

// The worker's two pools, on in-memory ports: a job holds its scan slot only until the scanner has
// answered, then promotes in the after-scan pool, which is bounded (a job that finds it full keeps
// its scan slot). Rescans keep to their share only while uploads are coming in.

type Rig = ReturnType<typeof setup>

/**
 * The poll interval is long: whatever happens within a test happens because the worker was woken.
 * At the end, whatever is still held is let go, so the worker can stop.
 */
function startWorker(t: Test, rig: Rig, options: Partial<WorkerOptions>, ...held: (() => void)[]): ScanWorker {
  const worker = new ScanWorker(
    { jobs: rig.jobs, runner: rig.runner, log: rig.log },
    { concurrency: 1, afterScanConcurrency: 1, rescanSlots: 1, leaseMs, pollIntervalMs: 60_000, outagePauseMaxMs: 60_000, ...options }
  )
  worker.start()
  t.teardown(() => {
    for (const release of held) release()
    return worker.stop(0)
  })
  return worker
}

async function until(what: string, probe: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`never happened: ${what}`)
    await sleep(5)
  }
}

/** Long enough for a worker that breaks a bound to have broken it: used before asserting that something did not happen. */
const settle = () => sleep(100)

t.test('a promotion held up by the store does not keep the scanner from the next upload; the pool bound holds', async (t) => {
  const rig = setup()
  const { jobs, objects, scanner } = rig
  const ids = [1, 2, 3, 4].map((runAt) => rig.add({ runAt }).id)
  scanner.answer({ result: 'clean' }, { result: 'clean' }, { result: 'clean' }, { result: 'clean' })
  const release = objects.holdCopies()
  startWorker(t, rig, { concurrency: 1, afterScanConcurrency: 2 }, release)
  // The first two promote (both copies stalled); the third is scanned meanwhile, on the one scan slot,
  // and waits for a place to record its verdict and promote.
  await until('two copies under way', () => objects.copiesInFlight === 2)
  await until('a third upload scanned while both copies stall', () => scanner.calls === 3 && scanner.inFlight === 0)
  await settle()
  t.equal(jobs.get(ids[2]!).status, 'scanning', 'its verdict waits for a place in the pool')
  t.equal(objects.copiesPeak, 2, 'no more copies at once than the after-scan pool holds')
  t.equal(scanner.calls, 3, 'the job waiting for a place keeps its scan slot: nothing else is scanned')
  t.equal(jobs.get(ids[3]!).status, 'pending', 'the fourth upload is not claimed')
  release()
  for (const id of ids) await until(`${id} clean`, () => jobs.get(id).status === 'clean')
  t.equal(objects.copiesPeak, 2)
  t.equal(scanner.calls, 4)
  for (const id of ids) t.match(jobs.get(id), { status: 'clean', location: 'production' })
})

t.test('scans are bounded by the scan slots, not by the promotions under way', async (t) => {
  const rig = setup()
  const { objects, scanner } = rig
  for (let i = 0; i < 6; i++) rig.add({ runAt: i })
  for (let i = 0; i < 6; i++) scanner.answer({ result: 'clean' })
  const holdScans = scanner.hold()
  const release = objects.holdCopies()
  startWorker(t, rig, { concurrency: 2, afterScanConcurrency: 4 }, holdScans, release)
  await until('two scans in the scanner', () => scanner.inFlight === 2)
  await settle()
  t.equal(scanner.peak, 2, 'never more scans than scan slots')
  holdScans()
  await until('four promotions stalled, two more scanned and waiting', () => objects.copiesInFlight === 4 && scanner.calls === 6)
  await settle()
  t.equal(objects.copiesPeak, 4)
  release()
  await until('all six promoted', () => rig.metrics.events.filter((e) => e === 'promotion:promoted').length === 6)
  t.equal(scanner.peak, 2)
})

t.test('a worker stopped while a job waits for a place in the pool gives that job back', async (t) => {
  const rig = setup()
  const { jobs, objects, scanner } = rig
  const first = rig.add({ runAt: 1 }).id
  const second = rig.add({ runAt: 2 }).id
  scanner.answer({ result: 'clean' }, { result: 'clean' })
  const release = objects.holdCopies()
  const worker = startWorker(t, rig, { concurrency: 1, afterScanConcurrency: 1 }, release)
  await until('the second one scanned, waiting for the pool', () => scanner.calls === 2 && scanner.inFlight === 0)
  const stopped = worker.stop(0)
  await settle()
  release()
  await stopped
  // Its verdict was not recorded yet: it is due again at once, to be scanned again, and the try is not counted.
  t.match(jobs.get(second), { status: 'scanning', attempts: 0 })
  t.ok(jobs.get(second).runAt <= Date.now(), 'due at once')
  t.equal(jobs.get(first).status, 'promoting', 'the first one, stopped in its promotion, will be promoted again')
})

t.test('rescans take every free slot while no upload comes in, and their share once uploads do', async (t) => {
  const rig = setup()
  const { scanner } = rig
  const stored = [0, 1, 2, 3, 4, 5].map(() => rig.add({ status: 'clean', location: 'production', verdict: clean, nextScanAt: 0 }).id)
  for (let i = 0; i < 7; i++) scanner.answer({ result: 'clean' })
  const held: (() => void)[] = [scanner.hold()]
  const worker = startWorker(t, rig, { concurrency: 4, afterScanConcurrency: 4, rescanSlots: 1 }, () => held.forEach((release) => release()))
  await until('four rescans at once on an idle worker', () => scanner.inFlight === 4)
  // An upload arrives (its commit's notice wakes the worker): it gets the first slot that frees,
  // and from then on rescans keep to one slot.
  const fresh = rig.add({ runAt: 0 }).id
  worker.wake()
  held.push(scanner.hold())
  held[0]!()
  await until('the upload claimed', () => rig.jobs.get(fresh).status !== 'pending')
  await until('the upload and one rescan in the scanner', () => scanner.inFlight === 2)
  await settle()
  t.equal(scanner.inFlight, 2, 'rescans keep to their share while uploads come in')
  held[1]!()
  await until('all done', () => rig.jobs.get(fresh).status === 'clean' && stored.every((id) => rig.jobs.get(id).nextScanAt! > Date.now() + 600_000))
  t.equal(scanner.calls, 7)
})

t.test('a promotion that ends during a clamd outage does not end the pause: only an answer from clamd does', async (t) => {
  const rig = setup()
  const { objects, scanner, log } = rig
  const first = rig.add({ runAt: 1 }).id
  rig.add({ runAt: 2 })
  // The first is scanned clean before the outage and its copy stalls; the second meets the outage.
  scanner.answer({ result: 'clean' }, new ScannerError('unavailable', 'clamd is down'))
  const release = objects.holdCopies()
  startWorker(t, rig, { concurrency: 1, afterScanConcurrency: 1 }, release)
  await until('the outage noticed', () => log.lines.includes('warn: scanner unreachable: pausing claims'))
  release()
  await until('the promotion done', () => rig.jobs.get(first).status === 'clean')
  await settle()
  t.notOk(log.lines.includes('info: scanner reachable again: claiming resumes'), 'still paused: nothing heard from clamd since the outage began')
  t.equal(scanner.calls, 2, 'nothing else sent to clamd meanwhile')
})
