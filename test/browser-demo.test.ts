import { randomBytes } from 'node:crypto'
import t from 'tap'
import { startBrowser, openPage, screenshot } from './helpers/browser.ts'
import { startClamd } from './helpers/clamd.ts'
import { startGateway } from './helpers/gateway.ts'
import { eicar } from './helpers/multipart.ts'

// The demo page in a real browser (Debian's Chromium, driven by playwright-core): two files
// dropped into Uppy's Dashboard go over tus with the page's tokens, are scanned by a real clamd,
// and the page shows each verdict as it arrives.
t.test('the demo page uploads a clean file, EICAR and a PDF and shows clean, infected and rejected', async (t) => {
  const clamd = await startClamd()
  t.teardown(() => clamd.stop())
  const { url } = await startGateway(t, {
    GW_CLAMD: clamd.url,
    GW_DEMO: 'true',
    GW_TOKEN_SECRETS: `demo:${randomBytes(32).toString('hex')}`,
    // Text only: a PDF is refused once its upload is complete (status rejected).
    GW_ALLOWED_TYPES: 'text/plain',
    // The page must work on a gateway that asks for keys: its tokens stand in for them.
    GW_UPLOAD_KEYS: randomBytes(16).toString('hex')
  })
  const browser = await startBrowser(t)
  const { page, problems } = await openPage(browser)
  const statusReads: string[] = []
  page.on('request', (request) => {
    if (request.url().includes('/v1/uploads/')) statusReads.push(request.url())
  })
  t.teardown(() => {
    if (problems.length > 0) console.log(`# browser: ${problems.join('\n# browser: ')}`)
  })

  await page.goto(`${url}/demo`, { waitUntil: 'load', timeout: 30_000 })
  await page.locator('.uppy-Dashboard').waitFor({ timeout: 15_000 })
  // The Dashboard's own (hidden) file input: what a drop or the "browse files" link feeds.
  await page.locator('.uppy-Dashboard-input').first().setInputFiles([
    { name: 'hello.txt', mimeType: 'text/plain', buffer: Buffer.from(`hello from a browser ${randomBytes(8).toString('hex')}\n`) },
    { name: 'eicar.com.txt', mimeType: 'text/plain', buffer: eicar },
    { name: 'report.pdf', mimeType: 'application/pdf', buffer: Buffer.from('%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n') }
  ])
  await page.locator('.uppy-StatusBar-actionBtn--upload').click({ timeout: 15_000 })

  const row = (name: string) => page.locator(`#uploads li[data-file-name="${name}"]`)
  /** Waits for a verdict (or the page's own error) on a file's row, and says which. */
  const verdictOf = async (name: string): Promise<string> => {
    const done = row(name).locator(['clean', 'infected', 'unscannable', 'rejected', 'failed', 'error'].map((s) => `[data-upload-status="${s}"]`).join(', '))
    await done.waitFor({ timeout: 60_000 })
    return `${await done.textContent()} ${await row(name).locator('.detail').textContent()}`.trim()
  }
  try {
    t.match(await verdictOf('hello.txt'), /^clean /)
    t.match(await verdictOf('eicar.com.txt'), /^infected signature: .*EICAR/, 'infected, with the signature shown')
    t.match(await verdictOf('report.pdf'), /^rejected .*application\/pdf/, 'rejected, with the detected type')
  } finally {
    await screenshot(page, 'browser-demo')
  }
  const id = await row('hello.txt').getAttribute('data-upload-id')
  t.match(id, /^[0-9a-f]{32}$/, 'the row knows its gateway upload id')
  t.same(problems.filter((p) => /Content Security Policy/i.test(p)), [], 'nothing on the page is blocked by its CSP')
  t.ok(statusReads.length > 0 && statusReads.every((u) => u.endsWith('?wait=25')), `the page long-polls its statuses (${statusReads.length} reads)`)
})
