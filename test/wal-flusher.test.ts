import { mkdtemp, open, rm, symlink, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import t from 'tap'
import { sqliteStateStore } from '../src/adapters/state-store/open-state-store.ts'
import { WalFlusher } from '../src/adapters/state-store/wal-flusher.ts'

t.test('WAL flusher: flushes before the log exists, while it grows, many at once, and closes', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'gw-wal-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const path = join(dir, 'db.sqlite')
  const flusher = new WalFlusher(path)
  await flusher.flush() // no log yet: nothing to flush
  const db = new DatabaseSync(path)
  db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; CREATE TABLE t (n INTEGER)')
  const insert = db.prepare('INSERT INTO t VALUES (?)')
  // Flushes asked for while one runs all resolve, each after a flush that started after it was asked.
  const flushes = []
  for (let i = 0; i < 20; i++) {
    insert.run(i)
    flushes.push(flusher.flush())
  }
  await Promise.all(flushes)
  await flusher.close()
  db.close()
})

t.test('WAL flusher: a failed open or fsync fails only the flushes that waited for it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'gw-wal-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const path = join(dir, 'db.sqlite')
  // A log that cannot be opened (a symlink to itself: ELOOP), then one that can.
  await symlink(`${path}-wal`, `${path}-wal`)
  const flusher = new WalFlusher(path)
  t.teardown(() => flusher.close())
  const first = flusher.flush()
  const queued = flusher.flush()
  await t.rejects(first, { code: 'ELOOP' })
  await t.rejects(queued, { code: 'ELOOP' })
  await unlink(`${path}-wal`)
  await writeFile(`${path}-wal`, 'frames')
  // Both the open and the queue behind a running flush start afresh.
  const running = flusher.flush()
  const behind = flusher.flush()
  await t.resolves(running)
  await t.resolves(behind)
})

for (const synchronous of ['full', 'normal'] as const) {
  t.test(`SQLite with GW_SQLITE_SYNCHRONOUS=${synchronous}: what was committed is there after a reopen`, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'gw-sync-'))
    t.teardown(() => rm(dir, { recursive: true, force: true }))
    const path = join(dir, 'state.db')
    const first = sqliteStateStore(path, { synchronous })
    await first.migrate()
    const now = Date.now()
    const begun = await first.beginUpload({ id: 'a'.repeat(32), objectKey: 'k', createdAt: now }, null, now)
    t.same(begun, { kind: 'started' })
    await first.commitUpload({ id: 'a'.repeat(32), objectKey: 'k', createdAt: now, size: 3, sha256: 'x'.repeat(64), filename: null, contentType: 'text/plain', owner: null })
    await first.close()
    const again = sqliteStateStore(path, { synchronous })
    t.teardown(() => again.close())
    t.match(await again.getUpload('a'.repeat(32)), { status: 'pending', size: 3 })
  })
}

t.test('SQLite with GW_SQLITE_SYNCHRONOUS=full: claims and lease renewals do not wait for an fsync; the next status change flushes them', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'gw-sync-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const path = join(dir, 'state.db')
  // Counts the fsyncs of every file handle (node's own FileHandle.sync, called through).
  const probe = await open(path, 'w')
  const proto = Object.getPrototypeOf(probe) as { sync: (this: unknown) => Promise<void> }
  await probe.close()
  const sync = proto.sync
  let fsyncs = 0
  proto.sync = function (this: unknown) {
    fsyncs++
    return sync.call(this)
  }
  t.teardown(() => {
    proto.sync = sync
  })
  const store = sqliteStateStore(path, { synchronous: 'full' })
  t.teardown(() => store.close())
  await store.migrate()
  const now = Date.now()
  const id = 'b'.repeat(32)
  await store.beginUpload({ id, objectKey: 'k', createdAt: now }, null, now)
  await store.commitUpload({ id, objectKey: 'k', createdAt: now, size: 3, sha256: 'x'.repeat(64), filename: null, contentType: 'text/plain', owner: null })
  const afterCommit = fsyncs
  t.ok(afterCommit > 0, 'the commit of the upload was flushed')
  const [claim] = await store.claim('w', 1, 60_000, Date.now())
  t.equal(claim?.upload.id, id, 'claimed')
  t.ok(await store.renewLease(claim!, 60_000, Date.now()), 'renewed')
  t.equal(fsyncs, afterCommit, 'neither the claim nor the renewal waited for an fsync')
  t.ok(await store.update(claim!, { status: 'failed', lastError: 'a test' }, Date.now()), 'status changed')
  t.equal(fsyncs, afterCommit + 1, 'the status change did, and its fsync covers the log before it')
})
