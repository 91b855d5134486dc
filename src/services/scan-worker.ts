import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type { Log } from '../ports/log.ts'
import type { Claim, JobQueue } from '../ports/job-queue.ts'
import type { JobRunner, RunOutcome } from './job-runner.ts'
import { LeaseClock } from './lease-fence.ts'

export interface WorkerOptions {
  /** Jobs at once in their scanning phase (reading the object and waiting for clamd's answer). */
  concurrency: number
  /** Jobs at once past their scan (promotion, tags, state writes): the after-scan pool. */
  afterScanConcurrency: number
  /**
   * Of those, how many may run rescans of stored objects while uploads are coming in (the rest is
   * kept for uploads); once no upload was claimed for UPLOADS_QUIET_MS, rescans may use every
   * slot. 0: this worker does not rescan.
   */
  rescanSlots: number
  leaseMs: number
  pollIntervalMs: number
  /** Longest pause in claiming while the scanner is unreachable. */
  outagePauseMaxMs: number
}

type Phase = 'scanning' | 'waiting' | 'after-scan'

/**
 * Rescans keep to their share until no upload was claimed for this long. A new upload then waits
 * at most for one scan to end: freed slots go to uploads first.
 */
export const UPLOADS_QUIET_MS = 10_000

interface Job {
  claim: Claim
  /** A rescan or an adopted object's first scan, counted against the rescans' share. */
  background: boolean
  done: Promise<void>
  abort: AbortController
  /** scanning and waiting (for a place in the after-scan pool) hold a scan slot. */
  phase: Phase
  /** When clamd answered this job's scan (null: it did not, or was not asked). */
  answeredAt: number | null
}

/**
 * Claims due jobs, at most as many as it has free scan slots (so scans never pile up in memory),
 * runs them, and renews their leases while they run. A job whose lease cannot be renewed is
 * aborted: another worker owns it now. New uploads are claimed first; due rescans get what is
 * left: up to rescanSlots while uploads are coming in, so a large rescan never slows them down
 * beyond its share, and every free slot once uploads have been quiet for a while, so a worker
 * with nothing else to do rescans at the scanner's speed.
 *
 * A job holds its scan slot only until the scanner has answered; what follows (promotion, tags,
 * state writes) runs in the after-scan pool of afterScanConcurrency places, so clamd gets the
 * next scan while the last one is copied. A job that finds the pool full waits for a place,
 * keeping its scan slot: no more than concurrency + afterScanConcurrency jobs ever run.
 */
export class ScanWorker {
  readonly owner = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`
  readonly #jobs: JobQueue
  readonly #runner: JobRunner
  readonly #options: WorkerOptions
  readonly #log: Log
  /** The claims and renewals of this worker's leases, for the fenced writes of its jobs. */
  readonly #leases: LeaseClock
  /** Keyed by claim token: a job whose lease expired may be claimed again while its old run ends. */
  readonly #running = new Map<string, Job>()
  /** Jobs in the after-scan pool. */
  #afterScan = 0
  /** Jobs done scanning that wait for a place in the after-scan pool, in order. */
  readonly #poolLine: { job: Job; enter(): void }[] = []
  /** While the scanner is unreachable, claiming pauses, growing up to outagePauseMaxMs. */
  #outagePauseMs = 0
  /** When the current pause began. */
  #pausedAt = 0
  #stopping = false
  /** When failed uploads were last looked at for their automatic round. */
  #requeuedAt = 0
  /** When the adopted objects' queue was last found empty: looked at again after a poll interval or a wake(), not for every freed slot. */
  #adoptedEmptyAt = Number.NEGATIVE_INFINITY
  /**
   * When the uploads' queue last gave fewer jobs than asked: looked at again after a poll interval
   * or a wake() (a commit made one due), not for every slot a rescan frees.
   */
  #uploadsShortAt = Number.NEGATIVE_INFINITY
  /** When an upload was last claimed (never: as long ago as can be). */
  #uploadClaimedAt = Number.NEGATIVE_INFINITY
  #loop: Promise<void> | null = null
  #wakeUp: (() => void) | null = null
  #woken = false

  constructor(deps: { jobs: JobQueue; runner: JobRunner; log: Log; leases?: LeaseClock }, options: WorkerOptions) {
    this.#jobs = deps.jobs
    this.#leases = deps.leases ?? new LeaseClock()
    this.#runner = deps.runner
    this.#log = deps.log.child({ worker: this.owner })
    this.#options = options
  }

  start(): void {
    if (this.#loop || this.#options.concurrency === 0) return
    this.#loop = this.#run()
  }

  /** Looks for work now instead of at the next poll: something became due (a new upload, a rescan started). */
  wake(): void {
    this.#adoptedEmptyAt = Number.NEGATIVE_INFINITY
    this.#uploadsShortAt = Number.NEGATIVE_INFINITY
    this.#nudge()
  }

  /** Goes round the claim loop now (a slot freed, or stopping). */
  #nudge(): void {
    // While clamd is unreachable the pause holds: new uploads must not turn it into a retry storm.
    if (this.#outagePauseMs > 0 && !this.#stopping) return
    if (this.#wakeUp) this.#wakeUp()
    else this.#woken = true
  }

  /**
   * Stops claiming, waits up to graceMs for running jobs, then aborts the rest and gives their
   * leases back, so another worker takes them at once instead of when the lease expires.
   */
  async stop(graceMs: number): Promise<void> {
    this.#stopping = true
    this.wake()
    await this.#loop
    const jobs = [...this.#running.values()]
    const timer = setTimeout(() => {
      for (const job of jobs) job.abort.abort(new Error('worker shutting down'))
    }, graceMs)
    await Promise.all(jobs.map((job) => job.done.then(() => (job.abort.signal.aborted ? this.#giveBack(job.claim) : undefined))))
    clearTimeout(timer)
  }

  /** After the aborted run has ended, so no write of the old run can follow the new owner's. */
  async #giveBack(claim: Claim): Promise<void> {
    const log = this.#log.child({ uploadId: claim.upload.id })
    try {
      if (await this.#jobs.giveBack(claim, Date.now())) log.info({}, 'scan stopped by shutdown; lease given back')
    } catch (err) {
      log.warn({ err }, 'could not give the lease back; it will be claimed again when it expires')
    }
  }

  async #run(): Promise<void> {
    while (!this.#stopping) {
      const free = this.#options.concurrency - this.#count((job) => job.phase !== 'after-scan')
      let claimed = 0
      if (free > 0) {
        // Each batch starts as soon as it is claimed: a later claim that fails cannot strand it.
        // Its leases are held from before the claim was sent (LeaseClock).
        const { leaseMs } = this.#options
        const take = async (background: boolean, claim: (now: number) => Promise<Claim[]>): Promise<number> => {
          const sentAt = this.#leases.now()
          const claims = await claim(Date.now())
          for (const c of claims) {
            this.#leases.held(c, sentAt, leaseMs)
            this.#start(c, background)
          }
          claimed += claims.length
          return claims.length
        }
        try {
          // Failed uploads whose automatic round is due (an infrastructure failure) are pending again, claimed
          // below. Their rounds are hours apart: looking once a second is plenty, and keeps writes off a busy loop.
          if (Date.now() - this.#requeuedAt >= 1_000) {
            this.#requeuedAt = Date.now()
            const requeued = await this.#jobs.requeueFailed(this.#requeuedAt, free)
            if (requeued > 0) this.#log.info({ requeued }, 'failed uploads tried again after an infrastructure failure')
          }
          let uploads = 0
          if (Date.now() - this.#uploadsShortAt >= this.#options.pollIntervalMs) {
            uploads = await take(false, (now) => this.#jobs.claim(this.owner, free, leaseMs, now))
            if (uploads < free) this.#uploadsShortAt = Date.now()
          }
          // Background work (rescans, first scans of adopted objects) gets what uploads left, within its share.
          if (uploads > 0) this.#uploadClaimedAt = Date.now()
          let backgroundFree = Math.min(free - uploads, this.#rescanShare() - this.#backgroundRunning())
          if (backgroundFree > 0 && this.#outagePauseMs === 0) {
            if (Date.now() - this.#adoptedEmptyAt >= this.#options.pollIntervalMs) {
              const adopted = await take(true, (now) => this.#jobs.claim(this.owner, backgroundFree, leaseMs, now, 'adopted'))
              if (adopted < backgroundFree) this.#adoptedEmptyAt = Date.now()
              backgroundFree -= adopted
            }
            if (backgroundFree > 0) await take(true, (now) => this.#jobs.claimRescans(this.owner, backgroundFree, leaseMs, now))
          }
        } catch (err) {
          this.#log.error({ err }, 'could not claim scans')
        }
      }
      // Go round at once while there may be more due work and free slots.
      if (claimed === free && free > 0 && this.#outagePauseMs === 0) continue
      await this.#sleep(this.#outagePauseMs || this.#options.pollIntervalMs)
    }
  }

  #start(claim: Claim, background: boolean): void {
    const abort = new AbortController()
    const job: Job = { claim, background, done: Promise.resolve(), abort, phase: 'scanning', answeredAt: null }
    const log = this.#log.child({ uploadId: claim.upload.id })
    const stopRenewing = this.#leases.keep(this.#jobs, claim, this.#options.leaseMs, abort, log)
    job.done = this.#runner
      .run(claim, abort.signal, log, (answered) => {
        if (answered) job.answeredAt = Date.now()
        return this.#leaveScanSlot(job)
      })
      .then(
        (outcome) => this.#noteScanner(outcome, job.answeredAt),
        (err: unknown) => log.warn({ err }, 'job stopped before it finished; its lease will expire and it will be claimed again')
      )
      .finally(() => {
        stopRenewing()
        this.#running.delete(claim.token)
        // A job ending in the after-scan pool frees no scan slot (it left its own on entering).
        if (job.phase === 'after-scan') {
          this.#afterScan--
          this.#admitWaiting()
        } else this.#nudge()
      })
    this.#running.set(claim.token, job)
  }

  /** The job is done with the scanner: into the after-scan pool now, or once a place frees. */
  #leaveScanSlot(job: Job): Promise<void> {
    if (this.#afterScan < this.#options.afterScanConcurrency && this.#poolLine.length === 0) {
      this.#enterPool(job)
      return Promise.resolve()
    }
    job.phase = 'waiting'
    const signal = job.abort.signal
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        const at = this.#poolLine.indexOf(entry)
        if (at >= 0) this.#poolLine.splice(at, 1)
        reject(signal.reason)
      }
      const entry = {
        job,
        enter: () => {
          signal.removeEventListener('abort', onAbort)
          this.#enterPool(job)
          resolve()
        }
      }
      if (signal.aborted) return onAbort()
      signal.addEventListener('abort', onAbort, { once: true })
      this.#poolLine.push(entry)
    })
  }

  #enterPool(job: Job): void {
    job.phase = 'after-scan'
    this.#afterScan++
    // Its scan slot is free: claim the next job now rather than at the next poll.
    this.#nudge()
  }

  #admitWaiting(): void {
    while (this.#afterScan < this.#options.afterScanConcurrency) {
      const next = this.#poolLine.shift()
      if (!next) return
      next.enter()
    }
  }

  #count(which: (job: Job) => boolean): number {
    let n = 0
    for (const job of this.#running.values()) if (which(job)) n++
    return n
  }

  /** Scan slots background work may hold now: its share while uploads are coming in, else all of them. */
  #rescanShare(): number {
    const { rescanSlots, concurrency } = this.#options
    if (rescanSlots === 0) return 0
    return Date.now() - this.#uploadClaimedAt < UPLOADS_QUIET_MS ? rescanSlots : concurrency
  }

  /** Background jobs that hold a scan slot: the rescans' share is of clamd, not of the after-scan pool. */
  #backgroundRunning(): number {
    return this.#count((job) => job.background && job.phase !== 'after-scan')
  }

  /**
   * answeredAt: when clamd answered the job's scan. Only an answer given after the pause began
   * ends it: a promotion of a file scanned before the outage says nothing about clamd now.
   */
  #noteScanner(outcome: RunOutcome, answeredAt: number | null): void {
    if (outcome === 'scanner-unavailable') {
      const next = Math.min(this.#options.outagePauseMaxMs, Math.max(this.#options.pollIntervalMs, this.#outagePauseMs * 2))
      if (next !== this.#outagePauseMs) this.#log.warn({ pauseMs: next }, 'scanner unreachable: pausing claims')
      if (this.#outagePauseMs === 0) this.#pausedAt = Date.now()
      this.#outagePauseMs = next
    } else if (this.#outagePauseMs !== 0 && answeredAt !== null && answeredAt >= this.#pausedAt) {
      this.#outagePauseMs = 0
      this.#log.info({}, 'scanner reachable again: claiming resumes')
      this.#nudge()
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.#woken) {
        this.#woken = false
        resolve()
        return
      }
      const timer = setTimeout(done, ms)
      function done(): void {
        clearTimeout(timer)
        resolve()
      }
      this.#wakeUp = () => {
        this.#wakeUp = null
        done()
      }
    })
  }
}
