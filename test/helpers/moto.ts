import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { CreateBucketCommand, ListMultipartUploadsCommand, ListPartsCommand, S3Client } from '@aws-sdk/client-s3'
import { freePort } from './free-port.ts'

export interface Moto {
  endpoint: string
  port: number
  stop(): Promise<void>
}

const START_TIMEOUT_MS = 30_000
const INSTALL_HINT = "moto_server was not found on PATH; install it with: pip install 'moto[server]'"
// moto_server runs under a small shell that kills it when our end of its stdin closes, so a test
// process that crashes or is killed by tap's timeout does not leave a server behind.
// (fd 3: sh gives background jobs /dev/null as stdin.)
const WRAPPER = 'exec 3<&0; moto_server -H 127.0.0.1 -p "$1" & pid=$!; (cat <&3 >/dev/null; kill $pid 2>/dev/null) & wait $pid'

/** Starts an in-memory S3 (moto) on a free loopback port and waits until it answers. */
export async function startMoto(): Promise<Moto> {
  if (spawnSync('sh', ['-c', 'command -v moto_server'], { stdio: 'ignore' }).status !== 0) throw new Error(INSTALL_HINT)
  // A free port can be taken by a parallel test file between freePort() and moto's bind: retry.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce()
    } catch (err) {
      if (attempt >= 3 || !(err instanceof BindError)) throw err
    }
  }
}

class BindError extends Error {}

async function startOnce(): Promise<Moto> {
  const port = await freePort()
  const endpoint = `http://127.0.0.1:${port}`
  // detached: its own process group, so stop() ends the shell, moto and the watcher together.
  const child = spawn('sh', ['-c', WRAPPER, 'sh', String(port)], { stdio: ['pipe', 'ignore', 'pipe'], detached: true })
  // Neither the server nor its pipes keep the test process alive; the stdin watcher cleans up.
  child.unref()
  for (const pipe of [child.stdin, child.stderr]) (pipe as unknown as { unref?: () => void } | null)?.unref?.()
  let stderr = ''
  child.stderr?.setEncoding('utf8').on('data', (s: string) => {
    // Keep only the tail: moto logs every request here.
    stderr = (stderr + s).slice(-4000)
  })
  let exited: Error | undefined
  child.once('error', (err) => (exited = err))
  child.once('exit', (code, signal) => {
    exited ??= new Error(`moto_server exited early (code ${code}, signal ${signal}): ${stderr}`)
  })

  const deadline = Date.now() + START_TIMEOUT_MS
  for (;;) {
    if (exited) throw /address already in use|bind/i.test(stderr) ? new BindError(exited.message) : exited
    if (await answers(endpoint)) break
    if (Date.now() > deadline) {
      await stopChild(child)
      throw new Error(`moto_server did not answer on ${endpoint} within ${START_TIMEOUT_MS} ms: ${stderr}`)
    }
    await sleep(100)
  }
  return { endpoint, port, stop: () => stopChild(child) }
}

async function answers(endpoint: string): Promise<boolean> {
  try {
    const res = await fetch(`${endpoint}/`, { signal: AbortSignal.timeout(1000) })
    await res.arrayBuffer()
    return res.ok
  } catch {
    return false
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return
  const exit = once(child, 'exit')
  const group = -child.pid
  const kill = (signal: NodeJS.Signals): void => {
    try {
      process.kill(group, signal)
    } catch {
      // already gone
    }
  }
  kill('SIGTERM')
  const timer = setTimeout(() => kill('SIGKILL'), 3000)
  // Never let a teardown hang the test file: an exit not seen after SIGKILL is given up on.
  let giveUp: NodeJS.Timeout | undefined
  try {
    await Promise.race([exit, new Promise<void>((resolve) => (giveUp = setTimeout(resolve, 8000)))])
  } finally {
    clearTimeout(giveUp)
    clearTimeout(timer)
    child.stdin?.destroy()
  }
}

/** A client for tests: explicit dummy credentials so no test ever reaches for real AWS ones. */
export function s3ClientFor(endpoint: string): S3Client {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED'
  })
}

export async function createBuckets(endpoint: string, ...buckets: string[]): Promise<void> {
  const client = s3ClientFor(endpoint)
  try {
    for (const Bucket of buckets) await client.send(new CreateBucketCommand({ Bucket }))
  } finally {
    client.destroy()
  }
}

/** Multipart uploads not completed nor aborted in these buckets, with the bytes their parts hold. */
export async function listIncompleteUploads(client: S3Client, ...buckets: string[]): Promise<Array<{ bucket: string; key: string; bytes: number }>> {
  const found: Array<{ bucket: string; key: string; bytes: number }> = []
  for (const Bucket of buckets) {
    const { Uploads = [] } = await client.send(new ListMultipartUploadsCommand({ Bucket }))
    for (const { Key = '', UploadId } of Uploads) {
      const { Parts = [] } = await client.send(new ListPartsCommand({ Bucket, Key, UploadId }))
      found.push({ bucket: Bucket, key: Key, bytes: Parts.reduce((n, p) => n + (p.Size ?? 0), 0) })
    }
  }
  return found
}
