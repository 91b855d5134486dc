import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads'
import { sqliteStateStore } from '../../src/adapters/state-store/open-state-store.ts'
import type { StateStore } from '../../src/ports/state-store.ts'

// node:sqlite is synchronous: two SQLite stores in one thread never run a statement
// at the same time, so they cannot show a race between connections. A store in a worker thread
// has its own connection and runs truly alongside this thread's, as a second process would.

interface Call {
  n: number
  method: string
  args: unknown[]
}
type Answer = { n: number; value: unknown } | { n: number; error: string }

/**
 * A SQLite state store on the database file `path`, opened in a worker thread. Every method of the
 * returned store runs in the worker; calls sent together are run there one after the other.
 */
export async function sqliteStoreInWorker(path: string): Promise<{ store: StateStore; close: () => Promise<void> }> {
  // No inherited loaders (tap's ts-node takes seconds per thread): Node strips the types itself.
  const worker = new Worker(new URL(import.meta.url), { workerData: { sqliteStorePath: path }, execArgv: [] })
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()
  let next = 0
  let failed: Error | undefined
  const failAll = (err: Error): void => {
    failed = err
    for (const w of waiting.values()) w.reject(err)
    waiting.clear()
  }
  worker.on('message', (answer: Answer) => {
    const w = waiting.get(answer.n)
    waiting.delete(answer.n)
    if ('error' in answer) w?.reject(new Error(answer.error))
    else w?.resolve(answer.value)
  })
  worker.on('error', failAll)
  worker.on('exit', (code) => failAll(new Error(`the store worker exited (${code})`)))
  const call = (method: string, args: unknown[]): Promise<unknown> =>
    new Promise((resolve, reject) => {
      if (failed) return reject(failed)
      const n = next++
      waiting.set(n, { resolve, reject })
      worker.postMessage({ n, method, args } satisfies Call)
    })
  await call('ping', [])
  const store = new Proxy({} as StateStore, {
    get: (_, method) => (typeof method === 'string' ? (...args: unknown[]) => call(method, args) : undefined)
  })
  return {
    store,
    close: async () => {
      if (failed) return
      await call('close', [])
      await worker.terminate()
    }
  }
}

if (!isMainThread && typeof workerData?.sqliteStorePath === 'string') {
  const store = sqliteStateStore(workerData.sqliteStorePath) as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>
  parentPort?.on('message', async ({ n, method, args }: Call) => {
    try {
      parentPort?.postMessage({ n, value: await store[method]!(...args) } satisfies Answer)
    } catch (err) {
      parentPort?.postMessage({ n, error: `${(err as Error).name}: ${(err as Error).message}` } satisfies Answer)
    }
  })
}
