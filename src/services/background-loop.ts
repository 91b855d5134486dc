import type { Log } from '../ports/log.ts'

/**
 * A loop that runs one step of background work after another, sleeping pollIntervalMs when a
 * step found nothing to do, until stopped. A failed step is logged and the loop goes on: the work
 * is kept in the state store, so the next step resumes it.
 */
export abstract class BackgroundLoop {
  protected readonly log: Log
  readonly #pollIntervalMs: number
  readonly #failure: string
  #stopping = false
  #loop: Promise<void> | null = null
  #timer: NodeJS.Timeout | null = null
  #wake: (() => void) | null = null

  constructor(log: Log, pollIntervalMs: number, failure: string) {
    this.log = log
    this.#pollIntervalMs = pollIntervalMs
    this.#failure = failure
  }

  /** One step; true when there may be more to do at once. */
  abstract runOnce(): Promise<boolean>

  protected get stopping(): boolean {
    return this.#stopping
  }

  start(): void {
    this.#loop ??= this.#run()
  }

  async stop(): Promise<void> {
    this.#stopping = true
    if (this.#timer) clearTimeout(this.#timer)
    this.#wake?.()
    await this.#loop
  }

  async #run(): Promise<void> {
    while (!this.#stopping) {
      let more = false
      try {
        more = await this.runOnce()
      } catch (err) {
        this.log.error({ err }, this.#failure)
      }
      if (!more && !this.#stopping) {
        await new Promise<void>((resolve) => {
          this.#wake = resolve
          this.#timer = setTimeout(resolve, this.#pollIntervalMs)
        })
      }
    }
  }
}
