import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { startChildGateway } from './helpers/child-gateway.ts'
import { multipart, uniqueContent } from './helpers/multipart.ts'

// SIGTERM: no new uploads, the one in flight still lands, then a clean exit.
t.test('SIGTERM lets an in-flight upload finish, then exits 0', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'gw-shutdown-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const gw = await startChildGateway(t, {
    GW_FS_ROOT: join(dir, 'objects'),
    GW_DATABASE_URL: `sqlite:${join(dir, 'state.db')}`,
    GW_SCAN_CONCURRENCY: '0',
    GW_SHUTDOWN_GRACE_MS: '10000'
  })
  const { body, contentType } = multipart([{ name: 'file', filename: 'slow.bin', data: uniqueContent(512 * 1024) }])
  const url = new URL(`${gw.url}/v1/uploads`)
  const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { 'content-type': contentType, 'content-length': body.length } }, (res) => {
      let text = ''
      res.setEncoding('utf8').on('data', (s: string) => (text += s))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }))
    })
    req.on('error', reject)
    // A slow client: the body trickles in over about a second, and SIGTERM arrives in the middle.
    let offset = 0
    const step = Math.ceil(body.length / 10)
    const timer = setInterval(() => {
      req.write(body.subarray(offset, offset + step))
      offset += step
      if (offset === step * 3) gw.child.kill('SIGTERM')
      if (offset >= body.length) {
        clearInterval(timer)
        req.end()
      }
    }, 100)
  })
  const result = await answer
  t.equal(result.status, 202, 'the upload in flight was stored and acknowledged')
  t.match(JSON.parse(result.body), { status: 'pending', size: 512 * 1024 })
  const [code] = await once(gw.child, 'exit')
  t.equal(code, 0)
  t.match(gw.output(), /shutting down/)
  await t.rejects(fetch(`${gw.url}/healthz`), 'no longer listening')
})
