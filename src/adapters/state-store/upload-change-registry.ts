import type { UploadChangeListener, UploadChanges } from '../../ports/upload-changes.ts'

/**
 * The listeners of this process, by upload id: the in-process UploadChanges (SQLite serves one
 * process, which is every writer) and where the PostgreSQL listener delivers what it hears.
 */
export class UploadChangeRegistry implements UploadChanges {
  readonly #listeners = new Map<string, Set<UploadChangeListener>>()
  readonly #due = new Set<() => void>()
  readonly #any = new Set<(id: string | null) => void>()
  #count = 0

  subscribe(id: string, listener: UploadChangeListener): () => void {
    let set = this.#listeners.get(id)
    if (!set) this.#listeners.set(id, (set = new Set()))
    // A wrapper of its own, so the same function subscribed twice is two subscriptions.
    const entry: UploadChangeListener = () => listener()
    set.add(entry)
    this.#count++
    let subscribed = true
    return () => {
      if (!subscribed) return
      subscribed = false
      this.#count--
      set.delete(entry)
      if (set.size === 0 && this.#listeners.get(id) === set) this.#listeners.delete(id)
    }
  }

  onUploadDue(listener: () => void): () => void {
    const entry = (): void => listener()
    this.#due.add(entry)
    return () => this.#due.delete(entry)
  }

  listenerCount(): number {
    return this.#count
  }

  onAnyChange(listener: (id: string | null) => void): () => void {
    const entry = (id: string | null): void => listener(id)
    this.#any.add(entry)
    return () => this.#any.delete(entry)
  }

  /** In one process every write is heard: always listening. */
  listeningEpoch(): number | null {
    return 0
  }

  /** Tells the listeners of these uploads, after the caller's own work (the write) has returned. */
  publish(ids: Iterable<string>): void {
    for (const id of ids) {
      // At once: whoever keeps what an upload looked like forgets it before anyone can act on the write.
      for (const listener of this.#any) callSafely(() => listener(id))
      const set = this.#listeners.get(id)
      // Checked again when called: a listener unsubscribed meanwhile hears nothing more.
      if (set) for (const listener of [...set]) queueMicrotask(() => set.has(listener) && callSafely(listener))
    }
  }

  /** Tells the onUploadDue listeners that an upload became pending. */
  publishDue(): void {
    for (const listener of [...this.#due]) queueMicrotask(() => this.#due.has(listener) && callSafely(listener))
  }

  /** Tells every listener: what was written while notices could not arrive is unknown. */
  publishAll(): void {
    for (const listener of this.#any) callSafely(() => listener(null))
    this.publish([...this.#listeners.keys()])
  }
}

function callSafely(listener: UploadChangeListener): void {
  try {
    listener()
  } catch {
    // A listener's failure is its own: the others and the writer go on.
  }
}
