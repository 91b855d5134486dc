import { once } from 'node:events'
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http'

/** An S3 request as the proxy sees it (path-style addressing: /bucket/key). */
export interface S3Call {
  method: string
  bucket: string
  key: string
  query: URLSearchParams
  /** x-amz-copy-source of a CopyObject, decoded ("bucket/key"); null for anything else. */
  copySource: string | null
}

export type S3Match = (call: S3Call) => boolean

export interface HeldResponse {
  /** Resolves once a matching request was executed by S3 and its answer is being held back. */
  held: Promise<void>
  /** Passes the held answer on to the client. */
  release(): void
}

export interface S3RequestProxy {
  endpoint: string
  /** Every request that reached the proxy, in order. */
  readonly calls: S3Call[]
  /**
   * The next request that matches is sent to S3 at once, but its answer is kept from the client
   * until release(): the client is stopped right after that step (for SIGSTOP at a precise point).
   */
  holdResponse(match: S3Match): HeldResponse
  /** Every matching request is answered 503 without reaching S3, until the returned function is called. */
  fail(match: S3Match): () => void
  stop(): Promise<void>
}

/**
 * An HTTP proxy in front of an S3 endpoint (moto) that can hold back the answer to, or fail, a
 * given request, such as the DeleteObject of one key. Only the gateway under test goes through it.
 */
export async function startS3RequestProxy(targetPort: number): Promise<S3RequestProxy> {
  const holds: { match: S3Match; gate: Promise<void>; onHeld: () => void }[] = []
  const failures = new Set<S3Match>()
  const calls: S3Call[] = []

  const server = createServer((req, res) => {
    const call = describe(req)
    calls.push(call)
    for (const match of failures) {
      if (match(call)) {
        req.resume()
        res.writeHead(503, { 'content-type': 'application/xml' })
        res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code><Message>injected by the test proxy</Message></Error>')
        return
      }
    }
    const i = holds.findIndex((h) => h.match(call))
    const hold = i >= 0 ? holds.splice(i, 1)[0] : undefined
    forward(req, res, targetPort, hold)
  })
  server.keepAliveTimeout = 1_000
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  if (!address || typeof address !== 'object') throw new Error('proxy has no address')

  return {
    endpoint: `http://127.0.0.1:${address.port}`,
    calls,
    holdResponse(match) {
      let onHeld!: () => void
      let release!: () => void
      const held = new Promise<void>((r) => (onHeld = r))
      const gate = new Promise<void>((r) => (release = r))
      holds.push({ match, gate, onHeld })
      return { held, release }
    },
    fail(match) {
      failures.add(match)
      return () => void failures.delete(match)
    },
    async stop() {
      server.closeAllConnections()
      await new Promise<void>((r) => server.close(() => r()))
    }
  }
}

function describe(req: IncomingMessage): S3Call {
  const url = new URL(req.url ?? '/', 'http://proxy')
  const [bucket = '', ...rest] = url.pathname.slice(1).split('/')
  const source = req.headers['x-amz-copy-source']
  return {
    method: req.method ?? 'GET',
    bucket: decodeURIComponent(bucket),
    key: decodeURIComponent(rest.join('/')),
    query: url.searchParams,
    copySource: typeof source === 'string' ? decodeURIComponent(source.replace(/^\//, '')) : null
  }
}

/** Sends the request on; with a hold, the whole answer is read from S3 and kept until the gate opens. */
function forward(req: IncomingMessage, res: ServerResponse, port: number, hold?: { gate: Promise<void>; onHeld: () => void }): void {
  const upstream = httpRequest({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
    if (!hold) {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(res)
      return
    }
    const chunks: Buffer[] = []
    answer.on('data', (c: Buffer) => chunks.push(c))
    answer.once('end', () => {
      hold.onHeld()
      void hold.gate.then(() => {
        if (res.destroyed) return
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        res.end(Buffer.concat(chunks))
      })
    })
  })
  upstream.on('error', () => res.destroy())
  req.pipe(upstream)
}
