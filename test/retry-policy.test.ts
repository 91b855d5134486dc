import t from 'tap'
import { ObjectChangedError } from '../src/ports/object-store.ts'
import type { StatusChange } from '../src/ports/job-queue.ts'
import { ScannerError } from '../src/ports/scanner.ts'
import { decideRetry, errorFacts, type RetryDecision, type RetryFacts } from '../src/services/retry-policy.ts'
import { IntegrityError } from '../src/services/scan-step.ts'

// Every branch of the retry policy, as a table: the facts of a failed job and what is written.
const options = { maxAttempts: 3, retryBaseMs: 1000, retryMaxMs: 60_000, failedRetryAfterMs: 3_600_000, failedRetryRounds: 2 }
const now = 1_000_000
const message = 'Error: boom'
const transient = { message, outage: false, aboutTheBytes: false }
const outage = { message, outage: true, aboutTheBytes: false }
const bytes = { message, outage: false, aboutTheBytes: true }
/** random 0: the backoff is half its ceiling, base·2^(attempts-1). */
const after1 = now + 500
const after3 = now + 2000
const base: RetryFacts = { kind: 'scan', status: 'scanning', location: 'quarantine', attempts: 1, failedRounds: 0, error: transient, now, random: 0, nextRescanAt: now + 86_400_000 }

const write = (change: StatusChange, log: [string, string, Record<string, unknown>] | null, failed = false): RetryDecision => ({
  action: 'write',
  change,
  log: log && { level: log[0] as 'warn' | 'error', msg: log[1], fields: log[2] },
  failed
})

const cases: [string, Partial<RetryFacts>, RetryDecision][] = [
  ['a scan that failed once is tried again later', {}, write({ status: 'pending', lastError: message, runAt: after1 }, ['warn', 'transient error, will retry', { attempts: 1, retryInMs: 500 }])],
  [
    'an unreachable scanner is never a reason to give up, and its try is not counted',
    { attempts: 3, error: outage },
    write({ status: 'pending', lastError: message, refundAttempt: true, runAt: after3 }, ['warn', 'scanner unreachable, will retry', { attempts: 3, retryInMs: 2000 }])
  ],
  [
    'a promotion that failed keeps its clean verdict and is retried',
    { kind: 'promote', status: 'promoting' },
    write({ status: 'promoting', lastError: message, runAt: after1 }, ['warn', 'transient error, will retry', { attempts: 1, retryInMs: 500 }])
  ],
  [
    'a scan given up after an infrastructure failure fails, to be tried again later',
    { attempts: 3 },
    write({ status: 'failed', lastError: message, failedRetryAt: now + 3_600_000, rescanOutcome: 'failed' }, ['error', 'scan failed, to be tried again later', { attempts: 3, failedRetryAt: now + 3_600_000 }], true)
  ],
  [
    'a scan given up after its automatic rounds fails for good',
    { attempts: 3, failedRounds: 2 },
    write({ status: 'failed', lastError: message, failedRetryAt: null, rescanOutcome: 'failed' }, ['error', 'scan failed for good', { attempts: 3, failedRetryAt: null }], true)
  ],
  [
    'a failure about the bytes gets no automatic round',
    { attempts: 3, error: bytes },
    write({ status: 'failed', lastError: message, failedRetryAt: null, rescanOutcome: 'failed' }, ['error', 'scan failed for good', { attempts: 3, failedRetryAt: null }], true)
  ],
  ['a promotion given up withdraws its production copy first', { kind: 'promote', status: 'promoting', attempts: 3 }, { action: 'withdraw' }],
  [
    'a promotion whose production copy cannot be withdrawn goes on being retried',
    { kind: 'promote', status: 'promoting', attempts: 3, withdrawn: false },
    write({ status: 'promoting', lastError: message, runAt: after3 }, ['error', 'promotion keeps failing and its production copy cannot be withdrawn; still trying', { attempts: 3 }])
  ],
  [
    'a promotion given up with nothing left in production fails',
    { kind: 'promote', status: 'promoting', attempts: 3, withdrawn: true },
    write({ status: 'failed', lastError: message, failedRetryAt: now + 3_600_000, rescanOutcome: 'failed' }, ['error', 'promotion failed, to be tried again later', { attempts: 3, failedRetryAt: now + 3_600_000 }], true)
  ],
  ['a requarantine that failed is retried quietly', { kind: 'requarantine', status: 'requarantining', location: 'production' }, write({ status: 'requarantining', lastError: message, runAt: after1 }, null)],
  [
    'a requarantine is never given up',
    { kind: 'requarantine', status: 'requarantining', location: 'production', attempts: 3 },
    write({ status: 'requarantining', lastError: message, runAt: after3 }, ['error', 'cannot take a detected object out of production yet; still trying', { attempts: 3 }])
  ],
  [
    'an adopted object that cannot be scanned leaves production as unscannable',
    { location: 'production', attempts: 3 },
    write(
      {
        status: 'requarantining',
        verdict: { result: 'unscannable', signature: null, reason: `could not be scanned: ${message}`, engine: 'not sent to the scanner', signatureVersion: null },
        scannedAt: now,
        lastError: message,
        resetAttempts: true,
        runAt: now
      },
      ['error', 'adopted object could not be scanned: taking it out of production', { attempts: 3 }]
    )
  ],
  ['an adopted object whose scan failed once is tried again', { location: 'production' }, write({ status: 'pending', lastError: message, runAt: after1 }, ['warn', 'transient error, will retry', { attempts: 1, retryInMs: 500 }])],
  ['a rescan that failed keeps the verdict and is tried again', { kind: 'rescan', status: 'clean', location: 'production' }, write({ status: 'clean', lastError: message, nextScanAt: after1 }, null)],
  ['a rescan during an outage is not counted', { kind: 'rescan', status: 'clean', location: 'production', attempts: 3, error: outage }, write({ status: 'clean', lastError: message, refundAttempt: true, nextScanAt: after3 }, null)],
  [
    'a rescan of a clean object given up waits for its next turn',
    { kind: 'rescan', status: 'clean', location: 'production', attempts: 3 },
    write({ status: 'clean', lastError: message, nextScanAt: now + 86_400_000, resetAttempts: true, refundAttempt: false, rescanOutcome: 'failed' }, null)
  ],
  [
    'a rescan of a detection given up is not scheduled again',
    { kind: 'rescan', status: 'infected', attempts: 3 },
    write({ status: 'infected', lastError: message, nextScanAt: null, resetAttempts: true, refundAttempt: false, rescanOutcome: 'failed' }, null)
  ]
]

for (const [name, facts, decision] of cases) {
  t.test(name, async (t) => {
    t.strictSame(decideRetry({ ...base, ...facts }, options), decision)
  })
}

t.test('what an error says', async (t) => {
  const table: [unknown, { message: string; outage: boolean; aboutTheBytes: boolean }][] = [
    [new ScannerError('unavailable', 'no clamd'), { message: 'ScannerError: no clamd', outage: true, aboutTheBytes: false }],
    [new ScannerError('connect_timeout', 'slow'), { message: 'ScannerError: slow', outage: true, aboutTheBytes: false }],
    [new ScannerError('idle_timeout', 'stalled'), { message: 'ScannerError: stalled', outage: false, aboutTheBytes: false }],
    [new IntegrityError('short read'), { message: 'IntegrityError: short read', outage: false, aboutTheBytes: true }],
    [new ObjectChangedError('quarantine', 'k'), { message: 'ObjectChangedError: object k in quarantine changed since it was read', outage: false, aboutTheBytes: true }],
    ['not an error', { message: 'not an error', outage: false, aboutTheBytes: false }]
  ]
  for (const [err, facts] of table) t.strictSame(errorFacts(err), facts)
})
