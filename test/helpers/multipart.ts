import { randomBytes } from 'node:crypto'
import { request } from 'node:http'

export interface Part {
  name: string
  filename?: string
  contentType?: string
  data: Buffer | string
}

/** A multipart/form-data body built by hand, so tests control every byte (odd filenames, two files, broken framing). */
export function multipart(parts: Part[]): { body: Buffer; contentType: string; boundary: string } {
  const boundary = `----gwtest${randomBytes(8).toString('hex')}`
  const chunks: Buffer[] = []
  for (const part of parts) {
    let head = `--${boundary}\r\nContent-Disposition: form-data; name="${part.name}"`
    if (part.filename !== undefined) head += `; filename="${part.filename}"`
    head += '\r\n'
    if (part.contentType) head += `Content-Type: ${part.contentType}\r\n`
    chunks.push(Buffer.from(`${head}\r\n`, 'utf8'), Buffer.from(part.data), Buffer.from('\r\n'))
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`))
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}`, boundary }
}

/** Content unique to this call: clamd caches verdicts by content, so no two tests share bytes. */
export function uniqueContent(size: number, label = 'clean'): Buffer {
  const head = Buffer.from(`${label} ${randomBytes(16).toString('hex')}\n`)
  if (size <= head.length) return head.subarray(0, size)
  return Buffer.concat([head, randomBytes(size - head.length)])
}

/** The EICAR test string, assembled here so that no file in the repository is itself detected. */
export const eicar = Buffer.from(['X5O!P%@AP[4\\PZX54(P^)7CC)7}$', 'EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'].join(''))

/** Text matched by the test signature set's marker rule (test.ldb). */
export const marker = 'CLAMD-TEST-MARKER-7f3a'

export interface Sent {
  status: number
  headers: Record<string, string | string[] | undefined>
  json: any // eslint-disable-line @typescript-eslint/no-explicit-any
}

/** Uploads one file (or any parts) and reads the JSON answer. */
export async function upload(baseUrl: string, parts: Part[] | Part, headers: Record<string, string> = {}): Promise<Sent> {
  const { body, contentType } = multipart(Array.isArray(parts) ? parts : [parts])
  const res = await fetch(`${baseUrl}/v1/uploads`, { method: 'POST', body: new Uint8Array(body), headers: { 'content-type': contentType, ...headers } })
  const text = await res.text()
  return { status: res.status, headers: Object.fromEntries(res.headers), json: text ? JSON.parse(text) : null }
}

/**
 * Sends the start of an upload and then cuts the connection, as a client that goes away
 * mid-upload does. `whileConnected` runs once the first `sendBytes` are written, and the connection
 * is cut when it ends (without it, 100 ms later): a test looks there for what the gateway has
 * stored so far, since "nothing left behind" proves nothing about an upload that stored nothing.
 * Resolves with its result once the socket is closed.
 */
export async function uploadAndDisconnect<T = undefined>(
  baseUrl: string,
  totalBytes: number,
  sendBytes: number,
  whileConnected?: () => Promise<T>
): Promise<T | undefined> {
  const boundary = `----gwcut${randomBytes(8).toString('hex')}`
  const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="cut.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`)
  const url = new URL(`${baseUrl}/v1/uploads`)
  let held: Promise<T | undefined> | undefined
  await new Promise<void>((resolve) => {
    const req = request({
      host: url.hostname,
      port: url.port,
      path: url.pathname,
      method: 'POST',
      headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': String(head.length + totalBytes + boundary.length + 8) }
    })
    req.on('error', () => resolve())
    req.on('close', () => resolve())
    req.write(head)
    let sent = 0
    const chunk = randomBytes(64 * 1024)
    const pump = (): void => {
      while (sent < sendBytes) {
        const piece = chunk.subarray(0, Math.min(chunk.length, sendBytes - sent))
        sent += piece.length
        if (!req.write(piece)) {
          req.once('drain', pump)
          return
        }
      }
      held = whileConnected ? whileConnected() : new Promise<undefined>((r) => setTimeout(r, 100))
      held.finally(() => req.destroy()).catch(() => {})
    }
    pump()
  })
  return held
}

export interface HeldUpload {
  /** Sends the rest of the file and reads the answer. */
  finish(): Promise<{ status: number; json: any }> // eslint-disable-line @typescript-eslint/no-explicit-any
  /** The answer, if the gateway answered before the body ended (a refusal). */
  early: Promise<{ status: number; headers: Record<string, string | string[] | undefined>; json: any }> // eslint-disable-line @typescript-eslint/no-explicit-any
}

/**
 * Starts an upload and holds it open after the first bytes, as a slow client does. Without
 * `contentLength` the body is sent chunked (the gateway cannot know its size).
 */
export function holdUpload(baseUrl: string, content: Buffer, { contentLength = false, headers: extra = {} as Record<string, string> } = {}): HeldUpload {
  const { body, contentType } = multipart([{ name: 'file', filename: 'held.bin', data: content }])
  const url = new URL(`${baseUrl}/v1/uploads`)
  const headers: Record<string, string> = { 'content-type': contentType, ...extra }
  if (contentLength) headers['content-length'] = String(body.length)
  const req = request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers })
  const early = new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; json: any }>((resolve, reject) => { // eslint-disable-line @typescript-eslint/no-explicit-any
    req.on('response', (res) => {
      let text = ''
      res.setEncoding('utf8').on('data', (s: string) => (text += s))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, json: text ? JSON.parse(text) : null }))
    })
    req.on('error', reject)
  })
  early.catch(() => {})
  const split = Math.min(body.length - 1, 1024)
  req.write(body.subarray(0, split))
  return {
    early,
    async finish() {
      req.end(body.subarray(split))
      return early
    }
  }
}
