import { setTimeout as sleep } from 'node:timers/promises'
import { eicar, marker, multipart, uniqueContent } from './multipart.ts'

/** What a test upload holds, and so what its verdict must be. */
export type Kind = 'clean' | 'eicar' | 'marker'

export const TERMINAL: readonly string[] = ['clean', 'infected', 'unscannable', 'failed']

/** The signature family each infected kind must be reported with. */
export const signatureOf: Record<Exclude<Kind, 'clean'>, RegExp> = { eicar: /EICAR/, marker: /Marker/ }

/** Unique bytes of about `size` (clamd caches clean verdicts by content, so nothing repeats). */
export function contentOf(kind: Kind, size: number): Buffer {
  if (kind === 'clean') return uniqueContent(size)
  if (kind === 'eicar') return Buffer.concat([uniqueContent(size), eicar])
  return Buffer.concat([uniqueContent(size, 'marker'), Buffer.from(marker), uniqueContent(64)])
}

export interface Answer {
  status: number
  /** The parsed JSON body, or null. */
  json: any // eslint-disable-line @typescript-eslint/no-explicit-any
  ms: number
  headers: Record<string, string>
}

/**
 * POSTs one file. Throws when no HTTP answer came (connection refused or reset, or no answer
 * within timeoutMs): the caller decides whether that was expected (a killed process).
 */
export async function sendUpload(baseUrl: string, data: Buffer, { timeoutMs = 30_000, filename = 'f.bin', idempotencyKey = '' } = {}): Promise<Answer> {
  const started = Date.now()
  const { body, contentType } = multipart([{ name: 'file', filename, contentType: 'application/octet-stream', data }])
  const res = await fetch(`${baseUrl}/v1/uploads`, {
    method: 'POST',
    body: new Uint8Array(body),
    headers: { 'content-type': contentType, ...(idempotencyKey ? { 'idempotency-key': idempotencyKey } : {}) },
    signal: AbortSignal.timeout(timeoutMs)
  })
  const text = await res.text()
  let json = null
  try {
    json = text ? JSON.parse(text) : null
  } catch {
    json = { unparsed: text }
  }
  return { status: res.status, json, ms: Date.now() - started, headers: Object.fromEntries(res.headers) }
}

/** Runs fn over items with at most `limit` at once. */
export async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++
      await fn(items[i] as T, i)
    }
  })
  await Promise.all(lanes)
}

/**
 * Polls GET /v1/uploads/:id until every upload is terminal or timeoutMs passed. `baseUrl` is
 * asked for each request, so a test can send each poll to a process that is alive. Answers
 * other than 200 (a store outage, a dying process) are polled again. Returns the last view of each.
 */
export async function waitAllTerminal(
  baseUrl: () => string,
  ids: readonly string[],
  { timeoutMs = 60_000, intervalMs = 250, concurrency = 8 } = {}
): Promise<Map<string, any>> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const views = new Map<string, any>() // eslint-disable-line @typescript-eslint/no-explicit-any
  const deadline = Date.now() + timeoutMs
  let open = [...ids]
  while (open.length > 0 && Date.now() < deadline) {
    await forEachLimit(open, concurrency, async (id) => {
      try {
        const res = await fetch(`${baseUrl()}/v1/uploads/${id}`, { signal: AbortSignal.timeout(5_000) })
        if (res.status === 200) views.set(id, await res.json())
        else await res.arrayBuffer()
      } catch {
        // the process asked may have just died: ask again next round
      }
    })
    open = open.filter((id) => !TERMINAL.includes(views.get(id)?.status))
    if (open.length > 0) await sleep(intervalMs)
  }
  return views
}
