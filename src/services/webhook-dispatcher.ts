import { randomBytes } from 'node:crypto'
import { backoffMs } from '../domain/upload-state.ts'
import type { EventSink } from '../ports/event-sink.ts'
import type { Log } from '../ports/log.ts'
import type { EventOutbox } from '../ports/event-outbox.ts'
import { BackgroundLoop } from './background-loop.ts'

export interface DispatcherOptions {
  batchSize: number
  leaseMs: number
  pollIntervalMs: number
  retryBaseMs: number
  retryMaxMs: number
}

/**
 * Delivers the outbox: events were written with the changes they report, so a crash never drops
 * one; each is sent until its receiver acknowledges it (at least once), with backoff kept in the
 * store. An event whose delivery outlived its lease may be sent twice: receivers deduplicate on its id.
 */
export class WebhookDispatcher extends BackgroundLoop {
  readonly #outbox: EventOutbox
  readonly #sink: EventSink
  readonly #options: DispatcherOptions
  readonly #owner = `webhooks-${randomBytes(6).toString('hex')}`

  constructor(deps: { outbox: EventOutbox; sink: EventSink; log: Log }, options: DispatcherOptions) {
    super(deps.log, options.pollIntervalMs, 'could not read the webhook outbox')
    this.#outbox = deps.outbox
    this.#sink = deps.sink
    this.#options = options
  }

  /** Sends one batch of due events; true when the batch was full (more may be due). */
  async runOnce(): Promise<boolean> {
    const { batchSize, leaseMs, retryBaseMs, retryMaxMs } = this.#options
    const events = await this.#outbox.claimEvents(this.#owner, batchSize, leaseMs, Date.now())
    await Promise.all(
      events.map(async (event) => {
        const log = this.log.child({ eventId: event.id, type: event.type })
        try {
          await this.#sink.deliver(event)
          await this.#outbox.eventDelivered(event, Date.now())
        } catch (err) {
          const delay = backoffMs(event.attempts, retryBaseMs, retryMaxMs)
          log.warn({ err, attempts: event.attempts, retryInMs: delay }, 'webhook delivery failed, will retry')
          await this.#outbox.eventFailed(event, (err as Error).message, Date.now() + delay)
        }
      })
    )
    return events.length === batchSize
  }
}
