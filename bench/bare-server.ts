/**
 * Scenario 5's same-run reference: a bare node:http server answering a fixed JSON body the size
 * of an upload's status, with the same headers, on the port the bench gives it (GW_PORT).
 */
import { createServer } from 'node:http'
import { sampleStatusBody } from './lib/sample-status.ts'

const body = sampleStatusBody

const server = createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}')
    return
  }
  res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', etag: '"bare"', 'cache-control': 'no-cache' }).end(body)
})
server.listen(Number(process.env.GW_PORT ?? 0), process.env.GW_HOST ?? '127.0.0.1')
const stop = (): void => {
  server.close(() => process.exit(0))
  server.closeAllConnections()
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
