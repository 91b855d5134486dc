import { setTimeout as sleep } from 'node:timers/promises'

export interface Polled {
  status: number
  etag: string | null
  body: any // eslint-disable-line @typescript-eslint/no-explicit-any
  /** How long the request took. */
  ms: number
  /** When the answer was read (epoch ms). */
  at: number
}

/** GET /v1/uploads/:id, with If-None-Match when `etag` is given and ?wait= when `wait` is, timed. */
export async function poll(
  base: string,
  id: string,
  { etag = null, wait = null, headers = {}, signal }: { etag?: string | null; wait?: number | string | null; headers?: Record<string, string>; signal?: AbortSignal } = {}
): Promise<Polled> {
  const started = Date.now()
  const query = wait === null ? '' : `?wait=${wait}`
  const res = await fetch(`${base}/v1/uploads/${id}${query}`, { headers: { ...headers, ...(etag ? { 'if-none-match': etag } : {}) }, ...(signal ? { signal } : {}) })
  const text = await res.text()
  const at = Date.now()
  return { status: res.status, etag: res.headers.get('etag'), body: text ? JSON.parse(text) : null, ms: at - started, at }
}

/** Waits until condition() holds; false if it did not within timeoutMs. */
export async function until(condition: () => boolean, timeoutMs = 5_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) return false
    await sleep(10)
  }
  return true
}
