import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort } from './free-port.ts'

export interface ClamdOptions {
  /** Files of test/fixtures/signatures to load. Default: all three (EICAR, ClamAV test file, marker). */
  signatures?: string[]
  /** clamd StreamMaxLength, e.g. '1M'. Default 100M. */
  streamMax?: string
  /** clamd MaxFileSize. Default 100M. */
  maxFile?: string
  /** clamd MaxScanSize. Default 400M. */
  maxScan?: string
  /** Extra clamd.conf lines. */
  extraConf?: string
}

export interface Clamd {
  /** tcp://127.0.0.1:PORT */
  url: string
  /** The same clamd on its local socket: unix:///DIR/clamd.sock */
  unixUrl: string
  port: number
  /** Its private directory: clamd.conf, clamd.log, tmp/, db/. */
  dir: string
  /** Its database directory: add a signature file here, then reload(). */
  dbDir: string
  /** RELOAD, then waits until clamd logs that the new database is in use. */
  reload(): Promise<void>
  /** Stops clamd and removes its directory. */
  stop(): Promise<void>
}

export const SIGNATURES_DIR = new URL('../fixtures/signatures/', import.meta.url).pathname
export const ALL_SIGNATURES = ['test.ndb', 'test.hdb', 'test.ldb']

const START_TIMEOUT_MS = 15_000
const RELOAD_TIMEOUT_MS = 15_000
const INSTALL_HINT =
  'clamd was not found on PATH: install it with `apt-get install clamav-daemon` (or run scripts/install-clamd.sh, or scripts/start-clamd.sh DIR which installs it)'

/** Starts a private clamd (foreground child process) on a free loopback port and waits for PONG. */
export async function startClamd(opts: ClamdOptions = {}): Promise<Clamd> {
  // A free port can be taken between freePort() and clamd's bind: retry a couple of times.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(opts)
    } catch (err) {
      if (attempt >= 3 || !(err instanceof BindError)) throw err
    }
  }
}

class BindError extends Error {}

async function startOnce(opts: ClamdOptions): Promise<Clamd> {
  const dir = await mkdtemp(join(tmpdir(), 'clamd-test-'))
  const dbDir = join(dir, 'db')
  await mkdir(dbDir)
  await mkdir(join(dir, 'tmp'))
  for (const sig of opts.signatures ?? ALL_SIGNATURES) await copyFile(join(SIGNATURES_DIR, sig), join(dbDir, sig))
  const port = await freePort()
  const conf = join(dir, 'clamd.conf')
  const log = join(dir, 'clamd.log')
  await writeFile(conf, clamdConf({ dir, dbDir, port, log, opts }))

  const child = spawn('sh', ['-c', WATCHDOG, 'clamd-watchdog', conf], { stdio: ['pipe', 'pipe', 'pipe'] })
  // Neither a forgotten stop() nor clamd itself keeps the test process alive.
  child.unref()
  for (const stream of [child.stdin, child.stdout, child.stderr]) (stream as unknown as Socket | null)?.unref()
  let output = ''
  const keep = (s: string) => {
    output = (output + s).slice(-4000)
  }
  child.stdout?.setEncoding('utf8').on('data', keep)
  child.stderr?.setEncoding('utf8').on('data', keep)
  let exited: Error | undefined
  child.once('error', (err) => {
    exited = err
  })
  child.once('exit', (code, signal) => {
    exited ??= new Error(code === 127 ? INSTALL_HINT : `clamd exited early (code ${code}, signal ${signal}): ${output}`)
  })
  child.stdin?.on('error', () => {})
  const stop = async () => {
    await stopChild(child)
    await rm(dir, { recursive: true, force: true })
  }

  const deadline = Date.now() + START_TIMEOUT_MS
  for (;;) {
    if (exited) {
      await stop()
      if (/bind|address already in use/i.test(output)) throw new BindError(exited.message)
      throw exited
    }
    if ((await rawCommand(port, 'PING').catch(() => '')) === 'PONG') break
    if (Date.now() > deadline) {
      const logText = await readFile(log, 'utf8').catch(() => '')
      await stop()
      throw new Error(`clamd did not answer PING on 127.0.0.1:${port} within ${START_TIMEOUT_MS} ms: ${output} ${logText.slice(-2000)}`)
    }
    await sleep(20)
  }

  const reload = async () => {
    const reloads = async () => ((await readFile(log, 'utf8').catch(() => '')).match(/Database correctly reloaded/g) ?? []).length
    const before = await reloads()
    const reply = await rawCommand(port, 'RELOAD')
    if (reply !== 'RELOADING') throw new Error(`clamd answered RELOAD with ${JSON.stringify(reply)}`)
    const until = Date.now() + RELOAD_TIMEOUT_MS
    while ((await reloads()) <= before) {
      if (Date.now() > until) throw new Error(`clamd did not finish reloading within ${RELOAD_TIMEOUT_MS} ms`)
      await sleep(20)
    }
  }

  return { url: `tcp://127.0.0.1:${port}`, unixUrl: `unix://${join(dir, 'clamd.sock')}`, port, dir, dbDir, reload, stop }
}

function clamdConf(p: { dir: string; dbDir: string; port: number; log: string; opts: ClamdOptions }): string {
  const lines = [
    'Foreground yes',
    `DatabaseDirectory ${p.dbDir}`,
    `TemporaryDirectory ${join(p.dir, 'tmp')}`,
    `TCPSocket ${p.port}`,
    'TCPAddr 127.0.0.1',
    `LocalSocket ${join(p.dir, 'clamd.sock')}`,
    `LogFile ${p.log}`,
    'LogTime yes',
    `StreamMaxLength ${p.opts.streamMax ?? '100M'}`,
    `MaxFileSize ${p.opts.maxFile ?? '100M'}`,
    `MaxScanSize ${p.opts.maxScan ?? '400M'}`,
    'MaxThreads 4',
    'AlertExceedsMax yes',
    'AlertEncrypted yes',
    // The test DB is tiny; no periodic self-check reloads behind the tests' back.
    'SelfCheck 0'
  ]
  if (process.getuid?.() === 0) lines.push('User root')
  if (p.opts.extraConf) lines.push(p.opts.extraConf)
  return lines.join('\n') + '\n'
}

/** A z-command without the code under test, so the helper does not depend on it. */
export function rawCommand(port: number, name: string, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port })
    let reply = ''
    const timer = setTimeout(() => socket.destroy(new Error(`no reply to ${name} within ${timeoutMs} ms`)), timeoutMs)
    socket.setEncoding('utf8')
    socket.on('data', (s: string) => {
      reply += s
      const nul = reply.indexOf('\0')
      if (nul >= 0) {
        clearTimeout(timer)
        socket.destroy()
        resolve(reply.slice(0, nul))
      }
    })
    socket.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    socket.on('close', () => {
      clearTimeout(timer)
      reject(new Error(`connection closed before a reply to ${name}`))
    })
    socket.write(`z${name}\0`)
  })
}

/**
 * Runs clamd (in the foreground) under a shell that stops it when its stdin closes: when the
 * test process ends in any way (even SIGKILL or a tap timeout) no clamd is left behind.
 * Exits with clamd's status, 127 when clamd is not installed.
 */
const WATCHDOG = `
command -v clamd >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin"
command -v clamd >/dev/null 2>&1 || exit 127
exec 3<&0
clamd --config-file="$1" 3<&- &
c=$!
{ read -r _ <&3; kill "$c" 2>/dev/null; } &
r=$!
wait "$c"; s=$?
kill "$r" 2>/dev/null
exit $s
`

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return
  const exit = once(child, 'exit')
  child.stdin?.end() // the watchdog stops clamd and waits for it
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  try {
    await exit
  } finally {
    clearTimeout(timer)
  }
}
