/**
 * Some fault-injection files, under load, ran every test, printed their results, and then hung in
 * Node's exit (FreeEnvironment → CleanupHandles, waiting on a libuv request that never completed,
 * seen with gdb) until tap's timeout killed them. Once the event loop is empty, this ends the
 * process with process.exit(), which does not wait on that cleanup. The short delay lets tap
 * write its last lines first (stdout to a pipe or socket is synchronous on Linux).
 */
export function exitWhenDone(): void {
  process.once('beforeExit', () => {
    setTimeout(() => process.exit(), 200)
  })
}
