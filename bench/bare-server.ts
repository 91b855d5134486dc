/**
 * Scenario 5's same-run reference: a bare node:http server answering a fixed JSON body the size
 * of an upload's status, with the same headers, on the port the bench gives it (GW_PORT).
 */
import { createServer } from 'node:http'

const body = JSON.stringify({
  id: '9d2c4e0f8a6b4c1d9e7f3a2b1c0d4e5f',
  status: 'clean',
  size: 48213,
  sha256: 'c0535e4be2b79ffd93291305436bf889314e4a3faec05ecffcbb7df31ad9e51a',
  filename: 'scan.pdf',
  contentType: 'application/pdf',
  createdAt: '2026-11-25T10:00:00.000Z',
  scannedAt: '2026-11-25T10:00:01.200Z',
  verdict: { result: 'clean', signature: null, reason: null, engine: 'ClamAV 1.4.6', signatureVersion: null },
  object: { bucket: 'bench-production', key: '9d2c4e0f8a6b4c1d9e7f3a2b1c0d4e5f' }
})

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
