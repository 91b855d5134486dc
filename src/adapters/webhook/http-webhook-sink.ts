import { createHmac } from 'node:crypto'
import type { EventSink } from '../../ports/event-sink.ts'
import type { NewEvent } from '../../ports/event-outbox.ts'

/**
 * POSTs each event as JSON, signed: `webhook-signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`
 * with `webhook-timestamp` (Unix seconds) and `webhook-id` (the event id, the same on every retry,
 * for the receiver to drop duplicates). Any 2xx is an acknowledgement.
 */
export class HttpWebhookSink implements EventSink {
  readonly #url: string
  readonly #secret: string
  readonly #timeoutMs: number

  constructor(options: { url: string; secret: string; timeoutMs: number }) {
    this.#url = options.url
    this.#secret = options.secret
    this.#timeoutMs = options.timeoutMs
  }

  async deliver(event: NewEvent): Promise<void> {
    const body = JSON.stringify({ id: event.id, type: event.type, createdAt: new Date(event.createdAt).toISOString(), data: event.data })
    const timestamp = String(Math.floor(Date.now() / 1000))
    const res = await fetch(this.#url, {
      method: 'POST',
      body,
      headers: {
        'content-type': 'application/json',
        'webhook-id': event.id,
        'webhook-timestamp': timestamp,
        'webhook-signature': `v1=${signature(this.#secret, timestamp, body)}`
      },
      signal: AbortSignal.timeout(this.#timeoutMs),
      redirect: 'manual'
    })
    await res.arrayBuffer().catch(() => undefined) // frees the socket
    if (res.status < 200 || res.status > 299) throw new Error(`webhook answered ${res.status}`)
  }
}

/** Receivers compute the same over the raw body and compare in constant time. */
export function signature(secret: string, timestamp: string, body: string): string {
  return createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')
}
