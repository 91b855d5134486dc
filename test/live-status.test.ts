import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { startClamd } from './helpers/clamd.ts'
import { startGateway, waitForStatus, type RunningGateway } from './helpers/gateway.ts'
import { poll as get, until } from './helpers/long-poll.ts'
import { eicar, upload, uniqueContent } from './helpers/multipart.ts'

// Long-polled status on the embedded defaults (SQLite, fs) with a real clamd: the in-process notices.
const clamd = await startClamd()
t.teardown(() => clamd.stop())
const uploadKey = 'upload-key-0123456789'
const adminKey = 'admin-key-0123456789'
const gw = await startGateway(t, { GW_CLAMD: clamd.url, GW_UPLOAD_KEYS: uploadKey, GW_ADMIN_KEYS: adminKey, GW_TOKEN_SECRETS: `k1:${'s'.repeat(40)}` })
const auth = { authorization: `Bearer ${uploadKey}` }
const poll = (base: string, id: string, etag: string | null, wait: number | string | null, signal?: AbortSignal) =>
  get(base, id, { etag, wait, headers: auth, ...(signal ? { signal } : {}) })

async function infectedUpload(g: RunningGateway): Promise<{ id: string; etag: string }> {
  const sent = await upload(g.url, { name: 'file', filename: 'x.doc', data: Buffer.concat([uniqueContent(2000), eicar]) }, auth)
  t.equal(sent.status, 202)
  await waitForStatus(g.url, sent.json.id, ['infected'], { headers: auth })
  const now = await poll(g.url, sent.json.id, null, null)
  return { id: sent.json.id, etag: now.etag as string }
}

t.test('a waiting client is answered within a second of each change, up to the final status', async (t) => {
  const { id, etag } = await infectedUpload(gw)
  const waiting = poll(gw.url, id, etag, 20)
  t.ok(await until(() => gw.gateway.state.listenerCount() === 1), 'the request waits')
  await sleep(300)
  // An operator's release changes the status (infected → scanning → clean, promoted by the worker).
  const released = Date.now()
  const res = await fetch(`${gw.url}/v1/uploads/${id}/release`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ reason: 'a test file, on purpose' })
  })
  t.equal(res.status, 202)
  const first = await waiting
  t.comment(`answered ${first.at - released} ms after the release (waited ${first.ms} ms)`)
  t.equal(first.status, 200)
  t.not(first.etag, etag, 'a new ETag')
  t.ok(first.at - released < 3_000, 'answered within a second (3 s allowed for a loaded machine)')
  let last = first
  while (last.body.status !== 'clean') {
    const next = await poll(gw.url, id, last.etag, 20)
    const record = await gw.gateway.state.getUpload(id)
    t.comment(`${next.status} ${next.body?.status ?? ''}: ${next.at - (record?.updatedAt ?? 0)} ms after the write`)
    t.equal(next.status, 200)
    t.ok(next.at - (record?.updatedAt ?? 0) < 3_000)
    last = next
  }
  t.match(last.body, { status: 'clean', released: { reason: 'a test file, on purpose' } })
  t.ok(await until(() => gw.gateway.state.listenerCount() === 0), 'no listener left')
})

t.test('nothing changes: 304 after the wait, with the same ETag', async (t) => {
  const { id, etag } = await infectedUpload(gw)
  const answer = await poll(gw.url, id, etag, 1)
  t.comment(`304 after ${answer.ms} ms`)
  t.equal(answer.status, 304)
  t.equal(answer.etag, etag)
  t.ok(answer.ms >= 900 && answer.ms < 5_000, 'after about a second')
  t.equal(gw.gateway.state.listenerCount(), 0)
})

t.test('a different ETag, or none, is answered at once', async (t) => {
  const { id, etag } = await infectedUpload(gw)
  const stale = await poll(gw.url, id, '"something-else"', 30)
  t.comment(`answered in ${stale.ms} ms`)
  t.equal(stale.status, 200)
  t.equal(stale.etag, etag)
  t.ok(stale.ms < 2_000)
  const plain = await poll(gw.url, id, null, 30)
  t.equal(plain.status, 200)
  t.ok(plain.ms < 2_000)
  const weak = await poll(gw.url, id, `W/${etag}`, 0)
  t.equal(weak.status, 304, 'wait=0 answers at once, a weak match counts')
})

t.test('wait must be an integer from 0 to 30', async (t) => {
  const { id, etag } = await infectedUpload(gw)
  for (const wait of ['31', '-1', 'abc', '1.5']) {
    const answer = await poll(gw.url, id, etag, wait)
    t.equal(answer.status, 400, `wait=${wait}`)
    t.equal(answer.body.error.code, 'GW_BAD_REQUEST')
  }
  t.equal((await poll(gw.url, 'f'.repeat(32), etag, 5)).status, 404, 'an unknown upload is 404 at once')
})

t.test('a client that goes away takes its waiter with it', async (t) => {
  const { id, etag } = await infectedUpload(gw)
  const abort = new AbortController()
  const waiting = poll(gw.url, id, etag, 30, abort.signal).catch((err: Error) => err)
  t.ok(await until(() => gw.gateway.state.listenerCount() === 1), 'waiting')
  t.match(await gw.gateway.metrics.registry.metrics(), /^gateway_status_waiters 1$/m, 'shown in the metrics')
  abort.abort()
  t.ok((await waiting) instanceof Error)
  t.ok(await until(() => gw.gateway.state.listenerCount() === 0, 2_000), 'the listener is removed')
})

t.test('shutdown answers waiting clients at once', async (t) => {
  const other = await startGateway(t, { GW_CLAMD: clamd.url, GW_UPLOAD_KEYS: uploadKey, GW_SCAN_CONCURRENCY: '0' })
  const sent = await upload(other.url, { name: 'file', filename: 'a.txt', data: uniqueContent(100) }, auth)
  const now = await poll(other.url, sent.json.id, null, null)
  t.equal(now.body.status, 'pending')
  const waiting = poll(other.url, sent.json.id, now.etag, 30)
  t.ok(await until(() => other.gateway.state.listenerCount() === 1), 'waiting')
  const stopping = Date.now()
  await other.stop()
  const answer = await waiting
  t.comment(`answered ${answer.at - stopping} ms after shutdown began; stopped in ${Date.now() - stopping} ms`)
  t.equal(answer.status, 304)
  t.ok(Date.now() - stopping < 5_000, 'the drain was not held up by the long poll')
})

t.test('an upload token long-polls its own upload, and no other', async (t) => {
  const mint = async (sub: string): Promise<Record<string, string>> => {
    const res = await fetch(`${gw.url}/v1/upload-tokens`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ sub }) })
    return { authorization: `Bearer ${(await res.json()).token}` }
  }
  const [mine, theirs] = await Promise.all([mint('ann'), mint('bob')])
  const sent = await upload(gw.url, { name: 'file', filename: 'a.txt', data: uniqueContent(100) }, mine)
  t.equal(sent.status, 202)
  await waitForStatus(gw.url, sent.json.id, ['clean'], { headers: mine })
  const now = await get(gw.url, sent.json.id, { headers: mine })
  const waited = await get(gw.url, sent.json.id, { headers: mine, etag: now.etag, wait: 1 })
  t.equal(waited.status, 304, 'waited, then not modified')
  const other = await get(gw.url, sent.json.id, { headers: theirs, etag: now.etag, wait: 10 })
  t.equal(other.status, 403, "another token's upload")
  t.ok(other.ms < 2_000, 'refused at once, without waiting')
})
