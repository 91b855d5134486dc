/** An event for the webhook outbox, written in the same transaction as the change it reports. */
export interface NewEvent {
  /** Unique per event: receivers deduplicate on it. */
  id: string
  type: 'upload.clean' | 'upload.infected' | 'upload.unscannable' | 'upload.failed' | 'object.requarantined' | 'upload.released' | 'upload.rejected'
  data: Record<string, unknown>
  createdAt: number
}

/** A claimed outbox event. */
export interface OutboxEvent extends NewEvent {
  attempts: number
  token: string
}

/** The webhook outbox: events written with the change they report, claimed for delivery. */
export interface EventOutbox {
  /** Events not delivered yet and due, claimed for delivery. */
  claimEvents(owner: string, limit: number, leaseMs: number, now: number): Promise<OutboxEvent[]>
  /** Delivered: never sent again. Fenced by the claim token. */
  eventDelivered(event: OutboxEvent, now: number): Promise<void>
  /** Not delivered: tried again at nextAttemptAt. Fenced by the claim token. */
  eventFailed(event: OutboxEvent, error: string, nextAttemptAt: number): Promise<void>
}
