/**
 * Goal 5's baseline (scenarios 5 and 8): a bare Fastify route, in its own node process as the
 * gateway is, serving from memory the same JSON the gateway serves for an upload's status
 * (BENCH_BARE_BODY, taken from the gateway by the scenario) with an ETag. No database, no auth,
 * no logging, no hooks. `?wait=N` with the matching If-None-Match holds the request for N
 * seconds and answers 304 (a long poll that never sees a change: scenario 8's reference).
 * Listens on GW_PORT.
 */
import Fastify from 'fastify'
import { sampleStatusBody } from './lib/sample-status.ts'

const body = process.env.BENCH_BARE_BODY ?? sampleStatusBody
const etag = '"bare"'
const waiting = new Set<() => void>()

const app = Fastify({ logger: false, requestTimeout: 0 })
app.get('/healthz', async () => ({ ok: true }))
app.get<{ Params: { id: string }; Querystring: { wait?: string } }>('/v1/uploads/:id', async (request, reply) => {
  reply.header('etag', etag).header('cache-control', 'no-cache')
  const wait = Number(request.query.wait ?? 0)
  if (wait > 0 && request.headers['if-none-match'] === etag) {
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        waiting.delete(done)
        resolve()
      }
      const timer = setTimeout(done, wait * 1000)
      waiting.add(done)
    })
    return reply.code(304).send()
  }
  return reply.type('application/json; charset=utf-8').send(body)
})
app.get('/bench/waiters', async () => ({ waiting: waiting.size }))

await app.listen({ port: Number(process.env.GW_PORT ?? 0), host: process.env.GW_HOST ?? '127.0.0.1' })
const stop = (): void => {
  // Long polls are answered at once, as the gateway does on shutdown.
  for (const done of [...waiting]) done()
  void app.close().then(() => process.exit(0))
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
