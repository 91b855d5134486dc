import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type { Log } from '../ports/log.ts'
import type { Claim, JobQueue } from '../ports/job-queue.ts'
import type { JobRunner, RunOutcome } from './job-runner.ts'

export interface WorkerOptions {
  concurrency: number
  /** Of those, how many may run rescans of stored objects (the rest is kept for uploads). */
  rescanSlots: number
  leaseMs: number
  pollIntervalMs: number
  /** Longest pause in claiming while the scanner is unreachable. */
  outagePauseMaxMs: number
}

/**
 * Claims due jobs, at most as many as it has free slots (so scans never pile up in memory),
 * runs them, and renews their leases while they run. A job whose lease cannot be renewed is
 * aborted: another worker owns it now. New uploads are claimed first; due rescans get what is
 * left, up to rescanSlots, so a large rescan never slows uploads down beyond its share.
 */
export class ScanWorker {
  readonly owner = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`
  readonly #jobs: JobQueue
  readonly #runner: JobRunner
  readonly #options: WorkerOptions
  readonly #log: Log
  /** Keyed by claim token: a job whose lease expired may be claimed again while its old run ends. */
  /** background: a rescan or an adopted object's first scan, counted against the rescans' share. */
  readonly #running = new Map<string, { claim: Claim; background: boolean; done: Promise<void>; abort: AbortController }>()
  /** While the scanner is unreachable, claiming pauses, growing up to outagePauseMaxMs. */
  #outagePauseMs = 0
  #stopping = false
  /** When failed uploads were last looked at for their automatic round. */
  #requeuedAt = 0
  #loop: Promise<void> | null = null
  #wakeUp: (() => void) | null = null
  #woken = false

  constructor(deps: { jobs: JobQueue; runner: JobRunner; log: Log }, options: WorkerOptions) {
    this.#jobs = deps.jobs
    this.#runner = deps.runner
    this.#log = deps.log.child({ worker: this.owner })
    this.#options = options
  }

  start(): void {
    if (this.#loop || this.#options.concurrency === 0) return
    this.#loop = this.#run()
  }

  /** Looks for work now instead of at the next poll (a new upload was committed). */
  wake(): void {
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
      const free = this.#options.concurrency - this.#running.size
      let claimed = 0
      if (free > 0) {
        // Each batch starts as soon as it is claimed: a later claim that fails cannot strand it.
        const start = (claims: Claim[], background: boolean): number => {
          for (const claim of claims) this.#start(claim, background)
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
          const uploads = start(await this.#jobs.claim(this.owner, free, this.#options.leaseMs, Date.now()), false)
          // Background work (rescans, first scans of adopted objects) gets what uploads left, within its share.
          let backgroundFree = Math.min(free - uploads, this.#options.rescanSlots - this.#backgroundRunning())
          if (backgroundFree > 0 && this.#outagePauseMs === 0) {
            backgroundFree -= start(await this.#jobs.claim(this.owner, backgroundFree, this.#options.leaseMs, Date.now(), 'adopted'), true)
            if (backgroundFree > 0) start(await this.#jobs.claimRescans(this.owner, backgroundFree, this.#options.leaseMs, Date.now()), true)
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
    const log = this.#log.child({ uploadId: claim.upload.id })
    let renewedAt = Date.now()
    // Renew at a third of the lease; a job that could not renew for most of its lease stops,
    // because another worker may own it by now.
    const renew = setInterval(() => {
      this.#jobs.renewLease(claim, this.#options.leaseMs, Date.now()).then(
        (held) => {
          if (held) renewedAt = Date.now()
          else abort.abort(new Error('lease lost'))
        },
        (err: unknown) => {
          log.warn({ err }, 'could not renew lease')
          if (Date.now() - renewedAt > (this.#options.leaseMs * 2) / 3) abort.abort(new Error('lease could not be renewed'))
        }
      )
    }, Math.max(100, Math.floor(this.#options.leaseMs / 3)))
    const done = this.#runner
      .run(claim, abort.signal, log)
      .then(
        (outcome) => this.#noteScanner(outcome),
        (err: unknown) => log.warn({ err }, 'job stopped before it finished; its lease will expire and it will be claimed again')
      )
      .finally(() => {
        clearInterval(renew)
        this.#running.delete(claim.token)
        this.wake()
      })
    this.#running.set(claim.token, { claim, background, done, abort })
  }

  #backgroundRunning(): number {
    let n = 0
    for (const job of this.#running.values()) if (job.background) n++
    return n
  }

  #noteScanner(outcome: RunOutcome): void {
    if (outcome === 'scanner-unavailable') {
      const next = Math.min(this.#options.outagePauseMaxMs, Math.max(this.#options.pollIntervalMs, this.#outagePauseMs * 2))
      if (next !== this.#outagePauseMs) this.#log.warn({ pauseMs: next }, 'scanner unreachable: pausing claims')
      this.#outagePauseMs = next
    } else if (this.#outagePauseMs !== 0) {
      this.#outagePauseMs = 0
      this.#log.info({}, 'scanner reachable again: claiming resumes')
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
