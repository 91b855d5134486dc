import t from 'tap'
import { startClamd } from './helpers/clamd.ts'
import { startGateway, waitForStatus } from './helpers/gateway.ts'
import { eicar, upload, uniqueContent } from './helpers/multipart.ts'
import { zip } from './helpers/zip.ts'

// Archives and clamd's own limits, through the whole gateway: what was not fully scanned is never clean.
const MiB = 1024 * 1024
const clamd = await startClamd({ maxFile: '1M', streamMax: '3M' })
t.teardown(() => clamd.stop())
// The gateway's limit is set above clamd's on purpose, as a misconfigured deployment would have it.
const gw = await startGateway(t, { GW_CLAMD: clamd.url, GW_SCANNER_MAX_BYTES: String(10 * MiB), GW_MAX_UPLOAD_BYTES: String(10 * MiB) })
const final = ['clean', 'infected', 'unscannable', 'failed']

async function verdictOf(data: Buffer, filename: string) {
  const res = await upload(gw.url, { name: 'file', filename, data })
  if (res.status !== 202) throw new Error(`upload refused: ${JSON.stringify(res.json)}`)
  return waitForStatus(gw.url, res.json.id, final)
}

t.test('a clean zip is clean', async (t) => {
  const done = await verdictOf(zip([{ name: 'notes.txt', data: uniqueContent(2000) }]), 'notes.zip')
  t.equal(done.status, 'clean')
})

t.test('EICAR inside a zip is infected', async (t) => {
  const done = await verdictOf(zip([{ name: 'readme.txt', data: uniqueContent(300) }, { name: 'eicar.com', data: eicar }]), 'bundle.zip')
  t.match(done, { status: 'infected', verdict: { signature: 'Win.Test.EICAR_HDB-1.UNOFFICIAL' } })
})

t.test('an encrypted zip is unscannable, not clean', async (t) => {
  const done = await verdictOf(zip([{ name: 'payload.txt', data: Buffer.concat([uniqueContent(300), eicar]) }], 'secret'), 'locked.zip')
  t.match(done, { status: 'unscannable', verdict: { result: 'unscannable', reason: /Encrypted/ } })
})

t.test("a file above clamd's MaxFileSize is unscannable (AlertExceedsMax)", async (t) => {
  const done = await verdictOf(uniqueContent(2 * MiB), 'big.bin')
  t.match(done, { status: 'unscannable', verdict: { reason: /Limits\.Exceeded|MaxFileSize/ } })
})

t.test("a file above clamd's StreamMaxLength is unscannable, even though clamd hangs up mid-stream", async (t) => {
  const done = await verdictOf(uniqueContent(5 * MiB), 'bigger.bin')
  t.match(done, { status: 'unscannable', verdict: { reason: /stream size limit/ } })
})
