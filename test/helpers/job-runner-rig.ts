import type { Test } from 'tap'
import type { UploadRecord, Verdict } from '../../src/ports/upload-record.ts'
import { JobRunner } from '../../src/services/job-runner.ts'
import { LeaseClock } from '../../src/services/lease-fence.ts'
import { PromoteStep } from '../../src/services/promote-step.ts'
import { RequarantineStep, type RequarantineMode } from '../../src/services/requarantine-step.ts'
import { RescanPolicy } from '../../src/services/rescan-policy.ts'
import { ScanStep } from '../../src/services/scan-step.ts'
import { UploadEvents } from '../../src/services/upload-events.ts'
import { FakeObjectStore } from './fake-object-store.ts'
import { FakeJobQueue, FakeScanHistory, FakeScanner, RecordingLog, sha256Of, uploadRecord } from './fake-ports.ts'
import { RecordingMetrics } from './recording-metrics.ts'

// The job runner with its real steps on in-memory ports, for job-runner*.test.ts.
export const leaseMs = 60_000
export const clean: Verdict = { result: 'clean', signature: null, reason: null, engine: 'ClamAV fake', signatureVersion: 27000 }
export const infected: Verdict = { ...clean, result: 'infected', signature: 'Eicar-Signature' }
export const content = 'the bytes of an upload'

/**
 * A lease clock that never finds a lease fresh, as if the worker had been paused before each write:
 * every write renews first, so assertFenced checks that each path goes through the fence at all.
 * When a renewal may be skipped is lease-clock.test.ts's business.
 */
class PausedBeforeEachWrite extends LeaseClock {
  override fresh(): boolean {
    return false
  }
}

export function setup(options: { scannerMaxBytes?: number; mode?: RequarantineMode } = {}) {
  const journal: string[] = []
  const leases = new PausedBeforeEachWrite()
  const jobs = new FakeJobQueue(journal)
  const objects = new FakeObjectStore(journal)
  const scanHistory = new FakeScanHistory()
  const scanner = new FakeScanner()
  const metrics = new RecordingMetrics()
  const events = new UploadEvents(true)
  const rescans = new RescanPolicy({ intervalMs: 3_600_000, jitter: 0 })
  const scan = new ScanStep({ objects, jobs, scanHistory, scanner, rescans, events, metrics, leases }, { scannerMaxBytes: options.scannerMaxBytes ?? 1_000_000, leaseMs })
  const steps = {
    scan,
    rescan: scan,
    promote: new PromoteStep({ objects, jobs, metrics, rescans, events, leases }, { leaseMs }),
    requarantine: new RequarantineStep({ objects, jobs, events, leases }, { mode: options.mode ?? 'move', leaseMs })
  }
  const retry = { maxAttempts: 3, retryBaseMs: 1000, retryMaxMs: 60_000, failedRetryAfterMs: 3_600_000, failedRetryRounds: 2 }
  const runner = new JobRunner({ jobs, objects, steps, rescans, events, leases }, { leaseMs, ...retry })
  const log = new RecordingLog()
  const abort = new AbortController()

  /** An upload with `content` stored where the record says, ready to be claimed. */
  const add = (fields: Partial<UploadRecord> = {}, bytes = content): UploadRecord => {
    const record = uploadRecord({ id: `up-${journal.length}-${Math.random()}`, size: bytes.length, sha256: sha256Of(bytes), ...fields })
    const version = objects.store(record.location, record.objectKey, bytes, { 'av-upload-id': record.id })
    jobs.add({ ...record, scannedVersion: record.scannedVersion === null ? null : version })
    return jobs.get(record.id)
  }
  const claim = async (queue: 'uploads' | 'adopted' | 'rescans' = 'uploads') => {
    const [c] = queue === 'rescans' ? await jobs.claimRescans('w', 1, leaseMs, Date.now()) : await jobs.claim('w', 1, leaseMs, Date.now(), queue)
    if (!c) throw new Error('nothing to claim')
    return c
  }
  const run = async (queue?: 'uploads' | 'adopted' | 'rescans') => runner.run(await claim(queue), abort.signal, log)
  const eventTypes = () => jobs.events.map((e) => e.type)
  return { jobs, objects, scanHistory, scanner, metrics, log, abort, journal, add, claim, run, runner, eventTypes }
}

/** Every object-store write came right after the lease was renewed (lease-fence.ts). */
export function assertFenced(t: Test, journal: string[]) {
  const writes = journal.flatMap((entry, i) => (entry.startsWith('renew') ? [] : [[entry, journal[i - 1]]]))
  t.ok(writes.length > 0, 'something was written')
  for (const [entry, before] of writes) t.equal(before, 'renew held', `${entry} is fenced`)
}

