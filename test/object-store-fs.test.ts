import { mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { Readable } from 'node:stream'
import t from 'tap'
import { FsObjectStore, InvalidKeyError } from '../src/adapters/object-store/fs-object-store.ts'
import { objectStoreContract, type IncompleteWrite } from './object-store-contract.ts'

const TEMP_FILE = /^\.(.+)\.[0-9a-f-]{36}\.tmp$/

/** Temp files left in either area (objects or sidecars), reported under the key they were for. */
async function tempFiles(root: string): Promise<IncompleteWrite[]> {
  const found: IncompleteWrite[] = []
  for (const dir of ['quarantine', 'production', 'quarantine.meta', 'production.meta']) {
    const base = join(root, dir)
    const entries = await readdir(base, { recursive: true, withFileTypes: true }).catch(() => [])
    for (const e of entries) {
      const m = TEMP_FILE.exec(e.name)
      if (!e.isFile() || !m) continue
      const path = join(e.parentPath, e.name)
      found.push({ key: relative(base, join(e.parentPath, m[1] as string)), bytes: (await stat(path)).size })
    }
  }
  return found
}

async function tempRoot(): Promise<{ root: string; cleanup: () => Promise<void> }> {
  const root = await mkdtemp(join(tmpdir(), 'fs-object-store-'))
  return { root, cleanup: () => rm(root, { recursive: true, force: true }) }
}

objectStoreContract(t, 'fs', async () => {
  const { root, cleanup } = await tempRoot()
  const store = new FsObjectStore({ root })
  return { store, cleanup: async () => (await store.close(), await cleanup()), listIncomplete: () => tempFiles(root) }
})

t.test('keys that could escape the root are rejected before anything is written', async (t) => {
  const { root, cleanup } = await tempRoot()
  t.teardown(cleanup)
  const store = new FsObjectStore({ root })
  const bad = ['', '../x', 'a/../../x', '/etc/passwd', 'a//b', 'a/./b', 'a/', '..', 'a\\..\\b', 'a\0b', 'x'.repeat(1025), `a/${'y'.repeat(201)}`]
  for (const key of bad) {
    const body = Readable.from([Buffer.from('x')])
    await t.rejects(store.put('quarantine', key, body, { contentType: 'text/plain', metadata: {} }), InvalidKeyError, JSON.stringify(key))
    t.ok(body.destroyed, 'the body is released')
    await t.rejects(store.get('quarantine', key), InvalidKeyError)
    await t.rejects(store.head('quarantine', key), InvalidKeyError)
    await t.rejects(store.delete('quarantine', key), InvalidKeyError)
  }
  t.same(await readdir(root), [], 'nothing was created, not even the area directories')
})

t.test('a key cannot be both an object and a prefix of other keys', async (t) => {
  const { root, cleanup } = await tempRoot()
  t.teardown(cleanup)
  const store = new FsObjectStore({ root })
  const meta = { contentType: 'text/plain', metadata: {} }
  await store.put('quarantine', 'a/b', Readable.from([Buffer.from('x')]), meta)
  await t.rejects(store.put('quarantine', 'a/b/c', Readable.from([Buffer.from('y')]), meta), InvalidKeyError)
  await store.put('quarantine', 'd/e/f', Readable.from([Buffer.from('y')]), meta)
  await t.rejects(store.put('quarantine', 'd/e', Readable.from([Buffer.from('y')]), meta), InvalidKeyError)
  t.equal(await store.head('quarantine', 'd/e'), null, 'a directory is not an object')
  await store.delete('quarantine', 'd/e')
  t.same(await tempFiles(root), [])
})

t.test('sidecars live in a parallel tree, so no key can name one', async (t) => {
  const { root, cleanup } = await tempRoot()
  t.teardown(cleanup)
  const store = new FsObjectStore({ root })
  await store.put('quarantine', 'k', Readable.from([Buffer.from('data')]), { contentType: 'text/plain', metadata: { m: '1' } })
  await store.put('quarantine', 'k.meta.json', Readable.from([Buffer.from('other')]), { contentType: 'text/csv', metadata: {} })
  t.match(await store.head('quarantine', 'k'), { size: 4, contentType: 'text/plain', metadata: { m: '1' } })
  t.same(store.location('quarantine', 'k'), { bucket: join(root, 'quarantine'), key: 'k' })
})

t.test('check() names a directory that cannot be created', async (t) => {
  const { root, cleanup } = await tempRoot()
  t.teardown(cleanup)
  await import('node:fs/promises').then((fs) => fs.writeFile(join(root, 'file'), 'x'))
  const store = new FsObjectStore({ root: join(root, 'file', 'sub') })
  const health = await store.check()
  t.same(health.map((h) => h.ok), [false, false])
  t.match(health[0]?.detail, /does not exist/)
})
