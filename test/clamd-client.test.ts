import { randomBytes, randomUUID } from 'node:crypto'
import { copyFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { ClamdScanner } from '../src/adapters/scanner/clamd-scanner.ts'
import { version, ping } from '../src/adapters/scanner/clamd-commands.ts'
import { connectClamd } from '../src/adapters/scanner/clamd-connection.ts'
import { eicarTestFile } from '../src/adapters/scanner/clamd-health-checks.ts'
import { instream, instreamOn } from '../src/adapters/scanner/clamd-instream.ts'
import { parseVersion } from '../src/adapters/scanner/clamd-replies.ts'
import { parseClamdEndpoint } from '../src/config/clamd-endpoints.ts'
import { ScannerError } from '../src/ports/scanner.ts'
import { SIGNATURES_DIR, startClamd } from './helpers/clamd.ts'
import { freePort } from './helpers/free-port.ts'
import { zip } from './helpers/zip.ts'

// Against real clamd processes, each with its own config, port and database.
t.setTimeout(60_000)
const KiB = 1024
const MiB = 1024 * KiB
const [clamd, limited, noEicar, noMarker] = await Promise.all([
  startClamd(),
  startClamd({ streamMax: '1M', maxFile: '512K' }),
  startClamd({ signatures: ['test.ldb'] }),
  startClamd({ signatures: ['test.ndb', 'test.hdb'] })
])
t.teardown(() => Promise.all([clamd, limited, noEicar, noMarker].map((c) => c.stop())))

const opts = { connectTimeoutMs: 2000, idleTimeoutMs: 5000, totalTimeoutMs: 20_000, timeoutMs: 2000 }
const scannerOptions = { connectTimeoutMs: 2000, idleTimeoutMs: 5000, totalTimeoutMs: 20_000, maxPerEndpoint: 4, healthIntervalMs: 0 }

/** clamd caches clean results by MD5: every scanned file gets content of its own. */
function unique(size = 1000): Buffer {
  const head = Buffer.from(`unique ${randomUUID()}\n`)
  return Buffer.concat([head, randomBytes(Math.max(0, size - head.length))])
}
const eicar = eicarTestFile()
const endpointsOf = (...urls: string[]) => urls.map(parseClamdEndpoint)
const scan = (url: string, data: Buffer, chunk = 64 * KiB) => {
  const chunks: Buffer[] = []
  for (let off = 0; off < data.length; off += chunk) chunks.push(data.subarray(off, off + chunk))
  return instream(parseClamdEndpoint(url), Readable.from(chunks), opts)
}
async function rejectsWith(t: Test, p: Promise<unknown>, code: string) {
  const err = await p.then(
    () => null,
    (e: unknown) => e
  )
  t.ok(err instanceof ScannerError, `a ScannerError (${String(err)})`)
  t.equal((err as ScannerError).code, code)
  return err as ScannerError
}

t.test('PING and VERSION', async (t) => {
  await t.resolves(ping(parseClamdEndpoint(clamd.url), opts), 'PONG')
  const v = await version(parseClamdEndpoint(clamd.url), opts)
  t.match(v.engine, /^ClamAV \d+\.\d+/)
  // The test database carries no version: clamd then prints the engine alone.
  t.same({ signatureVersion: v.signatureVersion, signatureDate: v.signatureDate }, { signatureVersion: null, signatureDate: null })
  t.same(parseVersion('ClamAV 1.4.6'), { engine: 'ClamAV 1.4.6', signatureVersion: null, signatureDate: null })
  t.same(parseVersion('ClamAV 1.4.6/27500/Tue Nov 24 09:00:00 2026'), {
    engine: 'ClamAV 1.4.6',
    signatureVersion: 27500,
    signatureDate: 'Tue Nov 24 09:00:00 2026'
  })
  for (const bad of ['', 'PONG', 'ClamAV', 'ClamAV 1.4.6/x/y', 'clamav 1.4.6']) {
    t.throws(() => parseVersion(bad), { code: 'protocol' }, JSON.stringify(bad))
  }
})

t.test('a clean file is clean', async (t) => {
  const data = unique(300 * KiB)
  t.same(await scan(clamd.url, data), { outcome: { result: 'clean' }, bytes: data.length })
})

t.test('the same clamd over its unix socket', async (t) => {
  t.same((await scan(clamd.unixUrl, unique())).outcome, { result: 'clean' })
  t.match((await scan(clamd.unixUrl, eicar)).outcome, { result: 'infected' })
})

t.test('EICAR is infected', async (t) => {
  const data = Buffer.concat([eicar, Buffer.from('\n'), unique(100)])
  t.same((await scan(clamd.url, data)).outcome, { result: 'infected', signature: 'Win.Test.EICAR_HDB-1.UNOFFICIAL' })
})

t.test('EICAR inside a zip is infected', async (t) => {
  const data = zip([
    { name: 'readme.txt', data: unique(500) },
    { name: 'eicar.com', data: eicar }
  ])
  t.same((await scan(clamd.url, data)).outcome, { result: 'infected', signature: 'Win.Test.EICAR_HDB-1.UNOFFICIAL' })
})

t.test('an encrypted zip is unscannable (AlertEncrypted), even with EICAR inside', async (t) => {
  const data = zip([{ name: 'payload.txt', data: Buffer.concat([unique(300), eicar]) }], 'secret')
  const { outcome } = await scan(clamd.url, data)
  t.match(outcome, { result: 'unscannable', reason: /Heuristics\.Encrypted\.Zip/ })
})

t.test('the test marker signature is detected', async (t) => {
  const data = Buffer.concat([unique(200), Buffer.from('... CLAMD-TEST-MARKER-7f3a ...')])
  t.same((await scan(clamd.url, data)).outcome, { result: 'infected', signature: 'Custom.Test.Marker.UNOFFICIAL' })
})

t.test('a file above MaxFileSize but below StreamMaxLength is unscannable (AlertExceedsMax)', async (t) => {
  const { outcome, bytes } = await scan(limited.url, unique(700 * KiB))
  t.match(outcome, { result: 'unscannable', reason: /Heuristics\.Limits\.Exceeded\.MaxFileSize/ })
  t.equal(bytes, 700 * KiB)
})

t.test('a file above StreamMaxLength is unscannable: the reply is read even after a failed write', async (t) => {
  const { outcome } = await scan(limited.url, unique(2 * MiB))
  t.same(outcome, { result: 'unscannable', reason: 'stream size limit: larger than clamd StreamMaxLength' })

  // clamd answers and closes while the client is still writing: the write often fails with
  // EPIPE/ECONNRESET before the reply is read. Repeat with large bodies to hit that race.
  let runsWithWriteError = 0
  const results: string[] = []
  for (let i = 0; i < 20; i++) {
    let writeErrors = 0
    const connection = await connectClamd(parseClamdEndpoint(limited.url), opts)
    const write = connection.socket.write.bind(connection.socket) as (chunk: Buffer, cb?: (err?: Error | null) => void) => boolean
    connection.socket.write = ((chunk: Buffer, cb?: (err?: Error | null) => void) =>
      write(chunk, (err) => {
        if (err) writeErrors++
        cb?.(err)
      })) as typeof connection.socket.write
    const data = unique(4 * MiB + i * 512 * KiB)
    const chunks = [data.subarray(0, 2 * MiB), data.subarray(2 * MiB)]
    const r = await instreamOn(connection, Readable.from(chunks), opts).then(
      (r) => r.outcome.result,
      (e: ScannerError) => `${e.code}: ${e.message}`
    )
    results.push(r)
    if (writeErrors > 0) runsWithWriteError++
  }
  t.same(new Set(results), new Set(['unscannable']), 'every oversized stream is unscannable, never an error or clean')
  t.ok(runsWithWriteError > 0, `the failed-write path was taken (${runsWithWriteError} of 20 runs)`)
})

t.test('readiness is ok when clamd detects EICAR', async (t) => {
  const scanner = new ClamdScanner({ ...scannerOptions, endpoints: endpointsOf(clamd.url, clamd.unixUrl) })
  const result = await scanner.readiness()
  t.equal(result.ok, true, result.detail)
  t.match(result.detail, `${clamd.url}: detected the EICAR test file as Win.Test.EICAR_HDB-1.UNOFFICIAL`)
  await scanner.close()
})

t.test('readiness names a clamd without the EICAR signature; ready only while another one detects it', async (t) => {
  const scanner = new ClamdScanner({ ...scannerOptions, endpoints: endpointsOf(clamd.url, noEicar.url) })
  const result = await scanner.readiness()
  t.equal(result.ok, true, 'scans go to the endpoint that detects EICAR')
  t.match(result.detail, `${noEicar.url}: answered OK to the EICAR test file`)
  t.match(result.detail, `${clamd.url}: detected`)
  await scanner.close()
  const alone = new ClamdScanner({ ...scannerOptions, endpoints: endpointsOf(noEicar.url) })
  t.equal((await alone.readiness()).ok, false)
  await alone.close()
})

t.test('readiness fails when an endpoint is unreachable', async (t) => {
  const dead = `tcp://127.0.0.1:${await freePort()}`
  const scanner = new ClamdScanner({ ...scannerOptions, endpoints: endpointsOf(dead) })
  const result = await scanner.readiness()
  t.equal(result.ok, false)
  t.match(result.detail, `${dead}: cannot connect to clamd at ${dead}: ECONNREFUSED`)
})

t.test('an unreachable endpoint is a quick ScannerError("unavailable"), and the body is let go', async (t) => {
  const dead = `tcp://127.0.0.1:${await freePort()}`
  const started = Date.now()
  const body = Readable.from([unique()])
  await rejectsWith(t, instream(parseClamdEndpoint(dead), body, opts), 'unavailable')
  t.ok(Date.now() - started < 1000, 'fails fast')
  t.ok(body.destroyed, 'body destroyed')

  const scanner = new ClamdScanner({ ...scannerOptions, endpoints: endpointsOf(dead, `unix://${join(clamd.dir, 'nope.sock')}`) })
  const err = await rejectsWith(t, scanner.scan(Readable.from([unique()])), 'unavailable')
  t.match(err.message, /no clamd endpoint reachable.*ECONNREFUSED.*ENOENT/)
  await rejectsWith(t, scanner.version(), 'unavailable')
})

t.test('with the first endpoint dead, scans go to the next one', async (t) => {
  const dead = `tcp://127.0.0.1:${await freePort()}`
  const scanner = new ClamdScanner({ ...scannerOptions, endpoints: endpointsOf(dead, clamd.url) })
  for (let i = 0; i < 3; i++) {
    const result = await scanner.scan(Readable.from([unique()]))
    t.match(result, { outcome: { result: 'clean' }, endpoint: clamd.url, engine: { engine: /^ClamAV / } })
  }
  t.match(await scanner.version(), { engine: /^ClamAV / })
  await scanner.close()
})

t.test('scans are spread round-robin over endpoints', async (t) => {
  const scanner = new ClamdScanner({ ...scannerOptions, endpoints: endpointsOf(clamd.url, limited.url) })
  t.ok((await scanner.readiness()).ok, 'both passed their first EICAR check')
  const used = []
  for (let i = 0; i < 4; i++) used.push((await scanner.scan(Readable.from([unique()]))).endpoint)
  t.same(used, [clamd.url, limited.url, clamd.url, limited.url])
  await scanner.close()
})

t.test('a new signature after RELOAD turns a clean file infected (helper reload())', async (t) => {
  const data = Buffer.concat([unique(200), Buffer.from('CLAMD-TEST-MARKER-7f3a')])
  t.same((await scan(noMarker.url, data)).outcome, { result: 'clean' })
  await copyFile(join(SIGNATURES_DIR, 'test.ldb'), join(noMarker.dbDir, 'test.ldb'))
  await noMarker.reload()
  t.same((await scan(noMarker.url, data)).outcome, { result: 'infected', signature: 'Custom.Test.Marker.UNOFFICIAL' })
})
