/**
 * Under heavy load, fault-injection files were seen to finish every test, print their plan, and
 * then not exit (something kept the event loop alive until tap's 300 s timeout). This bounds
 * that: a file still running after budgetMs says on stderr what keeps it alive and exits with
 * the status tap has set (a file whose tests had not all finished by then fails on its missing
 * results). The timer is unref'd: a file that ends normally is not held up by it.
 */
export function exitGuard(budgetMs: number): void {
  setTimeout(() => {
    process.stderr.write(`exit guard: still running after ${budgetMs} ms; active: ${process.getActiveResourcesInfo().join(', ')}\n`)
    process.exit()
  }, budgetMs).unref()
}
