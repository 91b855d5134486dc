import type { Test } from 'tap'

/**
 * Under heavy load, two fault-injection files were seen to finish every test and then not exit
 * (something kept the event loop alive until tap's 300 s timeout). This bounds that: once the
 * file's teardowns have run, a process still alive after graceMs says what keeps it alive on
 * stderr and exits with the status tap already set.
 */
export function exitGuard(t: Test, graceMs = 15_000): void {
  t.teardown(() => {
    setTimeout(() => {
      process.stderr.write(`exit guard: still running ${graceMs} ms after the last test; active: ${process.getActiveResourcesInfo().join(', ')}\n`)
      process.exit()
    }, graceMs).unref()
  })
}
