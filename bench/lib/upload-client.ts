import { randomBytes } from 'node:crypto'
import { Agent, request } from 'node:http'
import { Readable } from 'node:stream'

export interface UploadAnswer {
  status: number
  ms: number
  /** The upload id of an accepted upload. */
  id?: string
  /** The error code of a refusal, or the transport error. */
  error?: string
}

/**
 * POSTs one file as multipart/form-data with a Content-Length (as browsers send it), streaming
 * the body from `body`, and reads the answer. Never throws: a transport error is status 0.
 */
export function postUpload(baseUrl: string, agent: Agent, size: number, body: Readable, filename = 'bench.bin'): Promise<UploadAnswer> {
  const boundary = `----bench${randomBytes(8).toString('hex')}`
  const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${filename}"\r\nContent-Type: application/octet-stream\r\n\r\n`)
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`)
  const url = new URL('/v1/uploads', baseUrl)
  const started = performance.now()
  return new Promise((resolve) => {
    let settled = false
    const done = (answer: Omit<UploadAnswer, 'ms'>): void => {
      if (settled) return
      settled = true
      body.destroy()
      resolve({ ...answer, ms: performance.now() - started })
    }
    const req = request({
      host: url.hostname,
      port: url.port,
      path: url.pathname,
      method: 'POST',
      agent,
      headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': String(head.length + size + tail.length) }
    })
    req.on('response', (res) => {
      let text = ''
      res.setEncoding('utf8').on('data', (s: string) => (text += s))
      res.on('end', () => {
        const status = res.statusCode ?? 0
        if (status === 202) return done({ status, id: (JSON.parse(text) as { id: string }).id })
        let code = text.slice(0, 200)
        try {
          code = (JSON.parse(text) as { error?: { code?: string } }).error?.code ?? code
        } catch {
          // not JSON: keep the text
        }
        done({ status, error: code })
      })
      res.on('error', (err) => done({ status: 0, error: err.message }))
    })
    req.on('error', (err) => done({ status: 0, error: err.message }))
    req.write(head)
    body.on('error', (err) => req.destroy(err))
    body.on('end', () => req.end(tail))
    body.pipe(req, { end: false })
  })
}

/** A keep-alive agent with one socket per lane, as a browser fleet would hold them. */
export function uploadAgent(lanes: number): Agent {
  return new Agent({ keepAlive: true, maxSockets: lanes })
}
