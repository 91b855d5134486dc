import { randomBytes } from 'node:crypto'
import { ERRORS } from '@tus/utils'
import t from 'tap'
import { PgAdvisoryLocker } from '../src/adapters/tus/pg-advisory-locker.ts'
import { pgUrl } from './helpers/postgres.ts'

// The tus locker shared by replicas: two lockers stand for two processes on one PostgreSQL.
const lockers = [new PgAdvisoryLocker({ url: pgUrl }), new PgAdvisoryLocker({ url: pgUrl, acquireTimeoutMs: 5_000 })] as const
t.teardown(() => Promise.all(lockers.map((l) => l.close())))
const [a, b] = lockers
const fresh = () => randomBytes(8).toString('hex')
const failureOf = (p: Promise<unknown>) => p.then(() => null, (err: unknown) => err)
const live = () => new AbortController().signal

t.test('a lock held by another process is asked to let go (NOTIFY), then taken', async (t) => {
  const id = fresh()
  const held = a.newLock(id)
  let asked: () => void = () => {}
  const askedToRelease = new Promise<void>((resolve) => (asked = resolve))
  await held.lock(live(), () => asked())
  let acquired = false
  const waiting = b.newLock(id)
  const acquiring = waiting.lock(live(), () => {}).then(() => (acquired = true))
  await askedToRelease
  t.notOk(acquired, 'not taken while held')
  await held.unlock()
  await acquiring
  t.ok(acquired, 'taken once released')
  await waiting.unlock()
})

t.test('two requests of one process exclude each other; other ids do not wait', async (t) => {
  const id = fresh()
  const first = a.newLock(id)
  let released = 0
  await first.lock(live(), () => {
    released++
  })
  await a.newLock(fresh()).lock(live(), () => {})
  const second = a.newLock(id)
  const acquiring = second.lock(live(), () => {})
  await new Promise((r) => setTimeout(r, 200))
  t.ok(released > 0, 'the holder was asked to let go')
  await first.unlock()
  await acquiring
  await second.unlock()
})

t.test('a lock not released in time fails with tus\'s lock timeout; an aborted wait stops', async (t) => {
  const id = fresh()
  const held = a.newLock(id)
  await held.lock(live(), () => {})
  const impatient = new PgAdvisoryLocker({ url: pgUrl, acquireTimeoutMs: 300 })
  t.teardown(() => impatient.close())
  t.equal(await failureOf(impatient.newLock(id).lock(live(), () => {})), ERRORS.ERR_LOCK_TIMEOUT)
  const stop = new AbortController()
  const waiting = b.newLock(id).lock(stop.signal, () => {})
  stop.abort()
  t.equal(await failureOf(waiting), ERRORS.ERR_LOCK_TIMEOUT)
  await held.unlock()
  await b.newLock(id).lock(live(), () => {})
})
