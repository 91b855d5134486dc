import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { UploadChangeRegistry } from '../src/adapters/state-store/upload-change-registry.ts'
import { LiveStatus, statusETag } from '../src/services/live-status.ts'
import type { UploadView } from '../src/services/upload-view.ts'

// LiveStatus against the in-process notices, with a read the test controls.
const view = (status: UploadView['status']): UploadView => ({
  id: 'u1',
  status,
  size: 1,
  sha256: 'a'.repeat(64),
  filename: null,
  contentType: 'application/octet-stream',
  createdAt: new Date(0).toISOString(),
  scannedAt: null,
  verdict: null
})

function rig() {
  const changes = new UploadChangeRegistry()
  const live = new LiveStatus({ changes })
  let current: UploadView | null = view('pending')
  let reads = 0
  let fail: Error | null = null
  const read = async (): Promise<UploadView | null> => {
    reads++
    await sleep(20)
    if (fail) throw fail
    return current
  }
  return {
    changes,
    live,
    read,
    reads: () => reads,
    set: (v: UploadView | null) => (current = v),
    failWith: (err: Error) => (fail = err)
  }
}

t.test('notices that arrive during a read are folded into one more read', async (t) => {
  const r = rig()
  const etag = statusETag(view('pending'))
  const waiting = r.live.waitForChange('u1', etag, 5_000, r.read)
  await sleep(5)
  for (let i = 0; i < 10; i++) r.changes.publish(['u1'])
  await sleep(100)
  t.equal(r.reads(), 2, 'the first read, then one for the ten notices')
  r.set(view('scanning'))
  r.changes.publish(['u1'])
  t.match(await waiting, { kind: 'changed', view: { status: 'scanning' }, etag: statusETag(view('scanning')) })
  t.equal(r.changes.listenerCount(), 0)
  t.equal(r.live.waiting, 0)
})

t.test('a failed read rejects, a removed upload is gone', async (t) => {
  const r = rig()
  const etag = statusETag(view('pending'))
  const gone = r.live.waitForChange('u1', etag, 5_000, r.read)
  await sleep(50)
  r.set(null)
  r.changes.publish(['u1'])
  t.same(await gone, { kind: 'gone' })
  r.failWith(new Error('store down'))
  await t.rejects(r.live.waitForChange('u1', etag, 5_000, r.read), /store down/)
  t.equal(r.changes.listenerCount(), 0)
})

t.test('close answers every waiter unchanged, and later waits at once', async (t) => {
  const r = rig()
  const etag = statusETag(view('pending'))
  const waiters = [r.live.waitForChange('u1', etag, 30_000, r.read), r.live.waitForChange('u1', etag, 30_000, r.read)]
  await sleep(50)
  t.equal(r.live.waiting, 2)
  r.live.close()
  t.same(await Promise.all(waiters), [{ kind: 'unchanged' }, { kind: 'unchanged' }])
  t.equal(r.changes.listenerCount(), 0)
  t.same(await r.live.waitForChange('u1', etag, 30_000, r.read), { kind: 'unchanged' })
})
