import type { CpuProfile } from './cpu-profile.ts'

/**
 * Profiles another Node process through its inspector (started with --inspect on a loopback
 * port), over the DevTools protocol: only the measured window is sampled, not the start-up.
 */
export class RemoteProfiler {
  readonly #socket: WebSocket
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()
  #nextId = 1

  private constructor(socket: WebSocket) {
    this.#socket = socket
    socket.addEventListener('message', (event) => {
      const message = JSON.parse(String(event.data)) as { id?: number; result?: unknown; error?: { message: string } }
      if (message.id === undefined) return
      const waiter = this.#pending.get(message.id)
      if (!waiter) return
      this.#pending.delete(message.id)
      if (message.error) waiter.reject(new Error(message.error.message))
      else waiter.resolve(message.result)
    })
  }

  static async connect(inspectPort: number): Promise<RemoteProfiler> {
    const targets = (await (await fetch(`http://127.0.0.1:${inspectPort}/json/list`)).json()) as Array<{ webSocketDebuggerUrl: string }>
    const url = targets[0]?.webSocketDebuggerUrl
    if (!url) throw new Error(`no inspector target on port ${inspectPort}`)
    const socket = new WebSocket(url)
    await new Promise<void>((resolve, reject) => {
      socket.addEventListener('open', () => resolve(), { once: true })
      socket.addEventListener('error', () => reject(new Error(`could not connect to the inspector at ${url}`)), { once: true })
    })
    return new RemoteProfiler(socket)
  }

  #call(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = this.#nextId++
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject })
      this.#socket.send(JSON.stringify({ id, method, params }))
    })
  }

  async start(intervalUs = 500): Promise<void> {
    await this.#call('Profiler.enable')
    await this.#call('Profiler.setSamplingInterval', { interval: intervalUs })
    await this.#call('Profiler.start')
  }

  async stop(): Promise<CpuProfile> {
    const { profile } = (await this.#call('Profiler.stop')) as { profile: CpuProfile }
    await this.#call('Profiler.disable')
    return profile
  }

  close(): void {
    this.#socket.close()
  }
}
