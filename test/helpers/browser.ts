import { execFileSync } from 'node:child_process'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import type { Test } from 'tap'

export const ARTIFACTS_DIR = resolve(import.meta.dirname, '../artifacts')

/** Debian's chromium package (scripts/install-chromium.sh); Playwright's own download cannot work here. */
function chromiumPath(): string {
  try {
    return execFileSync('sh', ['-c', 'command -v chromium'], { encoding: 'utf8' }).trim()
  } catch {
    throw new Error('chromium was not found on PATH: install it with scripts/install-chromium.sh (apt-get install chromium)')
  }
}

/**
 * A headless Chromium with a fresh profile, driven by playwright-core, closed (and its profile
 * removed) at teardown. The flags keep Chromium from opening connections of its own: the
 * machines' network is closed and would refuse them by the dozen.
 */
export async function startBrowser(t: Test): Promise<BrowserContext> {
  const profile = await mkdtemp(join(tmpdir(), 'gw-chromium-'))
  // A persistent context is how Playwright takes a profile directory of ours (--user-data-dir).
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath(),
    headless: true,
    timeout: 30_000,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync'
    ]
  })
  t.teardown(async () => {
    await browser.close().catch(() => {})
    await rm(profile, { recursive: true, force: true })
  })
  return browser
}

/** A page whose console errors and failed requests are kept, to be shown when a test fails. */
export async function openPage(browser: BrowserContext): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage()
  page.setDefaultTimeout(30_000)
  const problems: string[] = []
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`)
  })
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`))
  page.on('requestfailed', (request) => problems.push(`request failed: ${request.method()} ${request.url()} ${request.failure()?.errorText}`))
  return { page, problems }
}

/** Saves a screenshot under test/artifacts/ (gitignored) and prints where. */
export async function screenshot(page: Page, name: string): Promise<string> {
  await mkdir(ARTIFACTS_DIR, { recursive: true })
  const path = join(ARTIFACTS_DIR, `${name}.png`)
  await page.screenshot({ path, fullPage: true, timeout: 10_000 })
  console.log(`# screenshot: ${path}`)
  return path
}
