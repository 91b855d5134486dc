import type { ChildProcess } from 'node:child_process'

/**
 * Everything the bench starts registers its cleanup here, so a failure or Ctrl-C still stops
 * every process and drops every schema: cleanups run last-in first-out, each once.
 */
export class Resources {
  readonly #cleanups: Array<{ label: string; fn: () => Promise<void> | void }> = []
  /** Children killed synchronously if the bench process exits without running the cleanups. */
  readonly #children = new Set<ChildProcess>()

  constructor() {
    process.on('exit', () => {
      for (const child of this.#children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    })
  }

  /** Registers a cleanup; the returned function runs it now (and unregisters it). */
  defer(label: string, fn: () => Promise<void> | void): () => Promise<void> {
    const entry = { label, fn }
    this.#cleanups.push(entry)
    return async () => {
      const i = this.#cleanups.indexOf(entry)
      if (i < 0) return
      this.#cleanups.splice(i, 1)
      await entry.fn()
    }
  }

  track(child: ChildProcess): void {
    this.#children.add(child)
    child.once('exit', () => this.#children.delete(child))
  }

  /** Runs every cleanup still registered; errors are reported, not thrown, so the rest still run. */
  async closeAll(report: (message: string) => void): Promise<void> {
    while (this.#cleanups.length > 0) {
      const entry = this.#cleanups.pop()
      if (!entry) break
      try {
        await entry.fn()
      } catch (err) {
        report(`cleanup ${entry.label} failed: ${(err as Error).message}`)
      }
    }
  }
}
