import type { NewEvent } from './event-outbox.ts'

/** Where outbox events go. deliver() resolves once the receiver acknowledged the event, and throws otherwise. */
export interface EventSink {
  deliver(event: NewEvent): Promise<void>
}
