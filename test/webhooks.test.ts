import { createHmac, timingSafeEqual } from 'node:crypto'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { startClamd } from './helpers/clamd.ts'
import { startGateway, waitForStatus } from './helpers/gateway.ts'
import { eicar, upload, uniqueContent } from './helpers/multipart.ts'

const secret = 'webhook-secret-for-tests-01'
const admin = 'admin-key-for-webhooks-001'
const final = ['clean', 'infected', 'unscannable', 'failed']

interface Received {
  id: string
  type: string
  data: { uploadId: string; [key: string]: unknown }
}

/** A receiver that checks every signature and refuses the first two deliveries of each event. */
async function receiver(t: Test) {
  const attempts = new Map<string, number>()
  const accepted = new Map<string, Received[]>()
  let badSignatures = 0
  const server = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8').on('data', (s: string) => (body += s))
    req.on('end', () => {
      const id = String(req.headers['webhook-id'])
      const timestamp = String(req.headers['webhook-timestamp'])
      const expected = Buffer.from(`v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`)
      const got = Buffer.from(String(req.headers['webhook-signature']))
      const fresh = Math.abs(Date.now() / 1000 - Number(timestamp)) < 300
      if (got.length !== expected.length || !timingSafeEqual(got, expected) || !fresh) {
        badSignatures++
        return void res.writeHead(401).end()
      }
      const n = (attempts.get(id) ?? 0) + 1
      attempts.set(id, n)
      if (n <= 2) return void res.writeHead(503).end('not yet')
      const event = JSON.parse(body) as Received
      accepted.set(id, [...(accepted.get(id) ?? []), event])
      res.writeHead(204).end()
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => new Promise<void>((r) => server.close(() => r())))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`, attempts, accepted, badSignatures: () => badSignatures }
}

const clamd = await startClamd()
t.teardown(() => clamd.stop())

t.test('every event is delivered, signed, despite failed attempts, exactly once per event id', async (t) => {
  const hooks = await receiver(t)
  const gw = await startGateway(t, {
    GW_CLAMD: clamd.url,
    GW_WEBHOOK_URL: hooks.url,
    GW_WEBHOOK_SECRET: secret,
    GW_ADMIN_KEYS: admin,
    GW_SCANNER_MAX_BYTES: '100000',
    GW_TOKEN_SECRETS: `k1:${'t'.repeat(32)}`
  })
  // The clean file comes with an upload token (minted anonymously: loopback without upload keys), whose sub and meta the events carry.
  const minted = await fetch(`${gw.url}/v1/upload-tokens`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sub: 'user-42', meta: { orderId: 7 } }) })
  const { token } = (await minted.json()) as { token: string }
  const clean = await upload(gw.url, { name: 'file', filename: 'a.txt', data: uniqueContent(1000) }, { authorization: `Bearer ${token}` })
  const infected = await upload(gw.url, { name: 'file', filename: 'b.txt', data: Buffer.concat([uniqueContent(100), eicar]) })
  const big = await upload(gw.url, { name: 'file', filename: 'c.bin', data: uniqueContent(200_000) })
  for (const r of [clean, infected, big]) await waitForStatus(gw.url, r.json.id, final)
  const release = await fetch(`${gw.url}/v1/uploads/${infected.json.id}/release`, {
    method: 'POST',
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
    body: JSON.stringify({ reason: 'known test file' })
  })
  t.equal(release.status, 202)
  await waitForStatus(gw.url, infected.json.id, ['clean'])

  const expected = [
    ['upload.clean', clean.json.id],
    ['upload.infected', infected.json.id],
    ['upload.unscannable', big.json.id],
    ['upload.released', infected.json.id]
  ]
  const deadline = Date.now() + 20_000
  const kinds = () => [...hooks.accepted.values()].flat().map((e) => [e.type, e.data.uploadId])
  while (kinds().length < expected.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
  await new Promise((r) => setTimeout(r, 500)) // nothing more arrives
  t.same(new Set(kinds().map((k) => k.join(' '))), new Set(expected.map((k) => k.join(' '))), 'every event, and only those')
  for (const [id, events] of hooks.accepted) {
    t.equal(events.length, 1, `event ${id} acknowledged once`)
    t.equal(hooks.attempts.get(id), 3, 'after two refused attempts')
  }
  t.equal(hooks.badSignatures(), 0, 'every signature checked out')
  const released = [...hooks.accepted.values()].flat().find((e) => e.type === 'upload.released')
  t.match(released?.data, { released: { by: /^admin-/, reason: 'known test file' }, sub: null, meta: null })
  const cleanEvent = [...hooks.accepted.values()].flat().find((e) => e.type === 'upload.clean')
  t.match(cleanEvent?.data, { uploadId: clean.json.id, sub: 'user-42', meta: { orderId: 7 } }, "the token's sub and meta")
})

t.test('without a webhook URL nothing is queued', async (t) => {
  const gw = await startGateway(t, { GW_CLAMD: clamd.url })
  const res = await upload(gw.url, { name: 'file', filename: 'a.txt', data: uniqueContent(100) })
  await waitForStatus(gw.url, res.json.id, final)
  t.same(await gw.gateway.state.claimEvents('probe', 10, 1000, Date.now() + 1000), [])
})

t.test('a webhook URL without a secret stops start-up', async (t) => {
  await t.rejects(startGateway(t, { GW_WEBHOOK_URL: 'http://127.0.0.1:1/x' }), { name: 'ConfigError', message: /^GW_WEBHOOK_SECRET: required/ })
})
