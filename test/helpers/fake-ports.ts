import { createHash } from 'node:crypto'
import type { Readable } from 'node:stream'
import { claimableStatuses, rescannableStatuses } from '../../src/domain/upload-state.ts'
import type { NewEvent } from '../../src/ports/event-outbox.ts'
import type { ScanHistory, ScanRecord } from '../../src/ports/history-store.ts'
import type { Claim, JobQueue, QueueStats, RescanOutcome, StatusChange } from '../../src/ports/job-queue.ts'
import type { Log } from '../../src/ports/log.ts'
import type { EndpointHealth, EngineVersion, ScanVerdict, ScanResult, Scanner } from '../../src/ports/scanner.ts'
import type { UploadRecord } from '../../src/ports/upload-record.ts'
import { applyChange } from '../../src/services/transition.ts'

// In-memory ports with the behaviour the real adapters have (a fenced update checks the token and
// the claimed status), for fast unit tests of the services. The object store is in
// fake-object-store.ts; both write lease renewals and object writes to a shared journal, so a test
// can check their order (a fence before each write).

export const sha256Of = (bytes: Buffer | string): string => createHash('sha256').update(bytes).digest('hex')

/** A record as the store holds it right after its upload was committed, with `fields` over it. */
export function uploadRecord(fields: Partial<UploadRecord> & { id: string }): UploadRecord {
  return {
    objectKey: fields.id,
    size: 0,
    sha256: sha256Of(''),
    filename: null,
    contentType: 'application/octet-stream',
    createdAt: 1,
    status: 'pending',
    updatedAt: 1,
    scannedAt: null,
    verdict: null,
    scannedVersion: null,
    attempts: 0,
    lastError: null,
    runAt: 0,
    location: 'quarantine',
    nextScanAt: null,
    released: null,
    failedRounds: 0,
    failedRetryAt: null,
    owner: null,
    ...fields
  }
}

interface Row {
  upload: UploadRecord
  token: string | null
}

const leased = new Set([...claimableStatuses, ...rescannableStatuses])

export class FakeJobQueue implements JobQueue {
  readonly #rows = new Map<string, Row>()
  #tokens = 0
  /** Events written with a change, in order. */
  readonly events: NewEvent[] = []
  readonly rescanOutcomes: { uploadId: string; outcome: RescanOutcome }[] = []
  readonly journal: string[]

  constructor(journal: string[] = []) {
    this.journal = journal
  }

  add(upload: UploadRecord): void {
    this.#rows.set(upload.id, { upload, token: null })
  }

  get(id: string): UploadRecord {
    const row = this.#rows.get(id)
    if (!row) throw new Error(`no upload ${id}`)
    return row.upload
  }

  /** Another worker took the job over: the claim's lease is gone. */
  steal(id: string): void {
    this.#rows.get(id)!.token = `stolen-${++this.#tokens}`
  }

  async claim(owner: string, limit: number, leaseMs: number, now: number, queue: 'uploads' | 'adopted' = 'uploads'): Promise<Claim[]> {
    const adopted = (u: UploadRecord) => u.status === 'pending' && u.location === 'production'
    const due = [...this.#rows.values()]
      .filter(({ upload: u }) => claimableStatuses.includes(u.status) && u.runAt <= now && adopted(u) === (queue === 'adopted'))
      .sort((a, b) => a.upload.runAt - b.upload.runAt)
      .slice(0, limit)
    return due.map((row) => {
      const status = row.upload.status === 'pending' ? 'scanning' : row.upload.status
      return this.#lease(row, owner, 'scan', { status, runAt: now + leaseMs, attempts: row.upload.attempts + 1, updatedAt: now })
    })
  }

  async claimRescans(owner: string, limit: number, leaseMs: number, now: number): Promise<Claim[]> {
    const due = [...this.#rows.values()]
      .filter(({ upload: u }) => rescannableStatuses.includes(u.status) && u.nextScanAt !== null && u.nextScanAt <= now)
      .sort((a, b) => a.upload.nextScanAt! - b.upload.nextScanAt!)
      .slice(0, limit)
    return due.map((row) => this.#lease(row, owner, 'rescan', { nextScanAt: now + leaseMs, attempts: row.upload.attempts + 1, updatedAt: now }))
  }

  #lease(row: Row, owner: string, kind: Claim['kind'], fields: Partial<UploadRecord>): Claim {
    row.token = `token-${++this.#tokens}`
    row.upload = { ...row.upload, ...fields }
    return { upload: row.upload, owner, token: row.token, kind }
  }

  #holds(claim: Claim): Row | null {
    const row = this.#rows.get(claim.upload.id)
    return row && row.token === claim.token && leased.has(row.upload.status) ? row : null
  }

  async renewLease(claim: Claim, leaseMs: number, now: number): Promise<boolean> {
    const row = this.#holds(claim)
    this.journal.push(`renew ${row ? 'held' : 'lost'}`)
    if (!row) return false
    // Where the lease is kept follows from the status, as in the SQL stores.
    row.upload = claimableStatuses.includes(row.upload.status) ? { ...row.upload, runAt: now + leaseMs } : { ...row.upload, nextScanAt: now + leaseMs }
    return true
  }

  async update(claim: Claim, change: StatusChange, now: number): Promise<boolean> {
    const row = this.#holds(claim)
    if (!row || row.upload.status !== claim.upload.status) return false
    row.upload = applyChange(row.upload, change, now)
    // A job that leaves the claimed phase gives its lease back.
    if (change.status === 'pending' || !claimableStatuses.includes(change.status)) row.token = null
    this.events.push(...(change.events ?? []))
    if (change.rescanOutcome !== undefined) this.rescanOutcomes.push({ uploadId: claim.upload.id, outcome: change.rescanOutcome })
    return true
  }

  async giveBack(claim: Claim, now: number): Promise<boolean> {
    const row = this.#holds(claim)
    if (!row) return false
    const due = claimableStatuses.includes(row.upload.status) ? { runAt: now } : { nextScanAt: now }
    row.upload = { ...row.upload, ...due, attempts: Math.max(0, row.upload.attempts - 1), updatedAt: now }
    row.token = null
    return true
  }

  async requeueFailed(now: number, limit: number): Promise<number> {
    const due = [...this.#rows.values()].filter(({ upload: u, token }) => u.status === 'failed' && token === null && u.failedRetryAt !== null && u.failedRetryAt <= now)
    for (const row of due.slice(0, limit)) {
      row.upload = { ...row.upload, status: 'pending', runAt: now, attempts: 0, failedRetryAt: null, failedRounds: row.upload.failedRounds + 1, updatedAt: now }
    }
    return Math.min(limit, due.length)
  }

  async queueStats(): Promise<QueueStats> {
    const queued = [...this.#rows.values()].map((r) => r.upload).filter((u) => ['pending', 'scanning', 'promoting'].includes(u.status))
    return { depth: queued.length, oldestCreatedAt: queued.length === 0 ? null : Math.min(...queued.map((u) => u.createdAt)) }
  }
}

export class FakeScanHistory implements ScanHistory {
  readonly scans: ScanRecord[] = []

  async recordScan(scan: ScanRecord): Promise<void> {
    this.scans.push(scan)
  }

  async listScans(uploadId: string): Promise<ScanRecord[]> {
    return this.scans.filter((s) => s.uploadId === uploadId)
  }
}

const engine: EngineVersion = { engine: 'ClamAV fake', signatureVersion: 27000, signatureDate: null }

/** Answers each scan with the next scripted outcome (or throws it), reading the whole body as clamd does. */
export class FakeScanner implements Scanner {
  readonly #script: (ScanVerdict | Error)[] = []
  calls = 0
  /** While set, every scan waits here before it answers (see hold). */
  #gate: Promise<void> | null = null
  /** Scans under way now, and the most there ever were at once. */
  inFlight = 0
  peak = 0

  /** Every scan from now on waits until the returned function is called (a busy clamd). */
  hold(): () => void {
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    this.#gate = gate
    return () => {
      if (this.#gate === gate) this.#gate = null
      release()
    }
  }

  answer(...outcomes: (ScanVerdict | Error)[]): void {
    this.#script.push(...outcomes)
  }

  async scan(body: Readable, signal?: AbortSignal): Promise<ScanResult> {
    this.calls++
    signal?.throwIfAborted()
    const next = this.#script.shift()
    if (next === undefined) throw new Error('the fake scanner has no answer scripted')
    if (next instanceof Error) {
      body.destroy()
      throw next
    }
    this.peak = Math.max(this.peak, ++this.inFlight)
    try {
      await this.#gate
      let bytes = 0
      for await (const chunk of body) bytes += (chunk as Buffer).length
      return { outcome: next, engine, bytes, endpoint: 'fake:3310' }
    } finally {
      this.inFlight--
    }
  }

  async version(): Promise<EngineVersion> {
    return engine
  }

  async readiness(): Promise<{ ok: boolean; detail: string }> {
    return { ok: true, detail: 'fake' }
  }

  endpoints(): EndpointHealth[] {
    return []
  }

  async close(): Promise<void> {}
}

/** Keeps every log line as "level: message", for tests that check what a service said. */
export class RecordingLog implements Log {
  readonly lines: string[]

  constructor(lines: string[] = []) {
    this.lines = lines
  }

  debug(_obj: object, msg = ''): void {
    this.lines.push(`debug: ${msg}`)
  }
  info(_obj: object, msg = ''): void {
    this.lines.push(`info: ${msg}`)
  }
  warn(_obj: object, msg = ''): void {
    this.lines.push(`warn: ${msg}`)
  }
  error(_obj: object, msg = ''): void {
    this.lines.push(`error: ${msg}`)
  }
  child(): Log {
    return this
  }
}
