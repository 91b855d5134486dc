import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import { ObjectChangedError, ObjectNotFoundError, StoreUnavailableError, type ObjectStore } from '../src/ports/object-store.ts'

/** A write that was started and is not finished (S3 multipart upload, fs temp file), with the bytes it holds. */
export interface IncompleteWrite {
  key: string
  bytes: number
}

export interface ContractStore {
  store: ObjectStore
  cleanup: () => Promise<void>
  /** Lets the suite prove that bodies are streamed and that failed puts leave nothing behind. */
  listIncomplete?: () => Promise<IncompleteWrite[]>
}

const MB = 1_000_000

/**
 * One suite every object store adapter must pass (run by test/object-store-*.test.ts). Bodies are
 * generated chunk by chunk, so a store that buffered the whole body would stall the gate in the first test.
 */
export function objectStoreContract(t: Test, name: string, makeStore: () => Promise<ContractStore>): void {
  t.test(`${name} object store contract`, async (t) => {
    const { store, cleanup, listIncomplete } = await makeStore()
    t.teardown(cleanup)
    const prefix = (): string => `contract/${randomUUID()}`
    const leftovers = async (p: string): Promise<IncompleteWrite[]> =>
      listIncomplete ? (await listIncomplete()).filter((w) => w.key.startsWith(p)) : []
    const put = (key: string, body: Readable, signal?: AbortSignal): Promise<void> =>
      store.put('quarantine', key, body, { contentType: 'application/pdf', metadata: { sha256: 'abc', 'original-name': 'a.pdf' }, signal })

    t.test('a 20 MB streamed body round-trips; it is written before it ends and is invisible until complete', async (t) => {
      const key = `${prefix()}/big.pdf`
      const gate = async (): Promise<void> => {
        if (!listIncomplete) return
        await waitFor(async () => (await leftovers(key)).some((w) => w.bytes > 0), 'bytes stored while the body is still open')
        t.equal(await store.head('quarantine', key), null, 'not visible before the put completes')
      }
      const body = generatedBody(20 * MB, { gate: { at: 16 * MB, open: gate } })
      await put(key, body.stream)
      t.match(await store.head('quarantine', key), {
        size: 20 * MB,
        version: /./,
        contentType: 'application/pdf',
        metadata: { sha256: 'abc', 'original-name': 'a.pdf' }
      })
      const { body: got, info } = await store.get('quarantine', key)
      t.equal(info.size, 20 * MB)
      t.same(await digest(got), { sha256: body.sha256(), bytes: 20 * MB })
      t.same(await leftovers(key), [])
    })

    t.test('an empty body is an empty object', async (t) => {
      const key = `${prefix()}/empty`
      await put(key, Readable.from([]))
      t.match(await store.head('quarantine', key), { size: 0, contentType: 'application/pdf' })
      t.same(await digest((await store.get('quarantine', key)).body), { sha256: sha256(Buffer.alloc(0)), bytes: 0 })
    })

    t.test('missing objects', async (t) => {
      const key = `${prefix()}/missing`
      t.equal(await store.head('quarantine', key), null)
      await t.rejects(store.get('quarantine', key), ObjectNotFoundError)
      await t.rejects(store.getTags('quarantine', key), ObjectNotFoundError)
      await t.rejects(store.setTags('quarantine', key, { a: 'b' }), ObjectNotFoundError)
      await t.rejects(store.copy('quarantine', 'production', key, {}), ObjectNotFoundError)
      t.equal(await store.head('production', key), null)
    })

    t.test('copy keeps bytes, content type and metadata, and sets only the given tags', async (t) => {
      const key = `${prefix()}/doc.pdf`
      const data = randomBytes(300_000)
      await put(key, Readable.from([data]))
      await store.setTags('quarantine', key, { scan: 'pending' })
      await store.copy('quarantine', 'production', key, { verdict: 'clean', engine: 'ClamAV 1.4' })
      const { body, info } = await store.get('production', key)
      t.match(info, { size: data.length, contentType: 'application/pdf', metadata: { sha256: 'abc', 'original-name': 'a.pdf' } })
      t.same(await digest(body), { sha256: sha256(data), bytes: data.length })
      t.same(await store.getTags('production', key), { verdict: 'clean', engine: 'ClamAV 1.4' })
      t.same(await store.getTags('quarantine', key), { scan: 'pending' }, 'the source is untouched')
      t.ok(await store.head('quarantine', key), 'copy is not a move')
    })

    t.test('copy with a content type replaces it (and sets a disposition), keeping metadata and tags as given', async (t) => {
      const key = `${prefix()}/drawing.png`
      await put(key, Readable.from([Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>')]))
      await store.copy('quarantine', 'production', key, { verdict: 'clean' }, { contentType: 'image/svg+xml', contentDisposition: 'attachment' })
      const info = await store.head('production', key)
      t.match(info, { contentType: 'image/svg+xml', contentDisposition: 'attachment', metadata: { sha256: 'abc', 'original-name': 'a.pdf' } })
      t.same(await store.getTags('production', key), { verdict: 'clean' }, 'tags replaced by the copy, whatever the metadata directive')
      t.match((await store.get('production', key)).info, { contentType: 'image/svg+xml', contentDisposition: 'attachment' })
      await store.copy('quarantine', 'production', key, { verdict: 'clean' }, { contentType: 'image/png' })
      t.notOk((await store.head('production', key))?.contentDisposition, 'a new type without a disposition has none')
      await store.copy('production', 'quarantine', key, {})
      t.match(await store.head('quarantine', key), { contentType: 'image/png' }, 'a copy without a type keeps the source\'s')
    })

    t.test('copy with ifVersion copies only that version of the source', async (t) => {
      const key = `${prefix()}/pinned.bin`
      await put(key, Readable.from([Buffer.from('the scanned bytes')]))
      const scanned = (await store.get('quarantine', key)).info.version
      t.equal((await store.head('quarantine', key))?.version, scanned, 'head and get agree on the version')
      await new Promise((r) => setTimeout(r, 5))
      await put(key, Readable.from([Buffer.from('other bytes!!!!!!')]))
      t.not((await store.head('quarantine', key))?.version, scanned, 'new bytes, new version')
      await t.rejects(store.copy('quarantine', 'production', key, {}, { ifVersion: scanned }), ObjectChangedError)
      t.equal(await store.head('production', key), null, 'nothing copied')
      const current = (await store.head('quarantine', key))!.version
      await store.copy('quarantine', 'production', key, { verdict: 'clean' }, { ifVersion: current })
      t.equal((await digest((await store.get('production', key)).body)).bytes, 'other bytes!!!!!!'.length)
    })

    t.test('copy overwrites the target and replaces its tags', async (t) => {
      const key = `${prefix()}/again.bin`
      await put(key, Readable.from([Buffer.from('first')]))
      await store.copy('quarantine', 'production', key, { verdict: 'clean', round: '1' })
      await put(key, Readable.from([Buffer.from('second version')]))
      await store.copy('quarantine', 'production', key, { verdict: 'clean' })
      t.same(await store.getTags('production', key), { verdict: 'clean' })
      t.equal((await digest((await store.get('production', key)).body)).bytes, 'second version'.length)
      await store.copy('quarantine', 'production', key, {})
      t.same(await store.getTags('production', key), {}, 'no tags replaces all tags')
    })

    t.test('setTags replaces the tag set; values S3 would refuse are sanitized; limits hold', async (t) => {
      const key = `${prefix()}/tags`
      await put(key, Readable.from([Buffer.from('x')]))
      t.same(await store.getTags('quarantine', key), {}, '{} without tags')
      await store.setTags('quarantine', key, { a: '1', b: '2' })
      await store.setTags('quarantine', key, { verdict: 'Eicar-Test-Signature, found; <x> é', 'bad key!': 'ok' })
      t.same(await store.getTags('quarantine', key), { verdict: 'Eicar-Test-Signature_ found_ _x_ _', 'bad key_': 'ok' })
      await store.setTags('quarantine', key, { long: 'v'.repeat(300) })
      t.equal((await store.getTags('quarantine', key)).long?.length, 256, 'values are cut at 256 characters')
      const eleven = Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`t${i}`, 'x']))
      await t.rejects(store.setTags('quarantine', key, eleven), RangeError, 'more than 10 tags is a caller bug')
    })

    t.test('list pages through the keys under a prefix, in order, and nothing else', async (t) => {
      const p = prefix()
      const keys = Array.from({ length: 7 }, (_, i) => `${p}/dir${i % 2}/k${i}`).sort()
      for (const key of keys) await put(key, Readable.from([Buffer.from(key)]))
      await put(`${p}x/outside`, Readable.from([Buffer.from('no')]))
      const seen: { key: string; size: number; modifiedAt: number }[] = []
      let token: string | null = null
      let pages = 0
      do {
        const page = await store.list('quarantine', `${p}/`, token, 3)
        t.ok(page.objects.length <= 3)
        seen.push(...page.objects)
        token = page.nextToken
        pages++
      } while (token !== null && pages < 10)
      t.same(seen.map((o) => o.key), keys, 'every key once, in order, none outside the prefix')
      t.same(seen.map((o) => o.size), keys.map((k) => Buffer.byteLength(k)))
      for (const o of seen) t.ok(Math.abs(o.modifiedAt - Date.now()) < 10 * 60_000, `${o.key} was written just now`)
      t.same(await store.list('production', `${p}/`, null, 10), { objects: [], nextToken: null })
    })

    t.test('delete is idempotent', async (t) => {
      const key = `${prefix()}/gone`
      await put(key, Readable.from([Buffer.from('bye')]))
      await store.delete('quarantine', key)
      t.equal(await store.head('quarantine', key), null)
      await store.delete('quarantine', key)
      await store.delete('production', `${prefix()}/never-existed`)
    })

    t.test('a put replaces an object; a failed put leaves the previous version intact', async (t) => {
      const key = `${prefix()}/v`
      const v1 = randomBytes(1000)
      await put(key, Readable.from([v1]))
      await t.rejects(put(key, generatedBody(8 * MB, { failAt: 6 * MB }).stream), /body failed/)
      t.same(await digest((await store.get('quarantine', key)).body), { sha256: sha256(v1), bytes: 1000 })
      const v2 = randomBytes(10)
      await put(key, Readable.from([v2]))
      t.same(await digest((await store.get('quarantine', key)).body), { sha256: sha256(v2), bytes: 10 })
    })

    // "Leaves nothing" proves something only about a put that had stored bytes when the body failed.
    const storedBefore = (p: string) => ({
      at: 12 * MB,
      open: () => (listIncomplete ? waitFor(async () => (await leftovers(p)).some((w) => w.bytes > 0), 'bytes stored before the body fails') : Promise.resolve())
    })

    t.test('a body that errors mid-way rejects with its error and leaves nothing', async (t) => {
      const p = prefix()
      const err = await put(`${p}/x`, generatedBody(20 * MB, { failAt: 12 * MB, gate: storedBefore(p) }).stream).catch((e: unknown) => e)
      t.match(err, { message: 'body failed mid-way' }, 'rejects with the body error itself')
      t.equal(await store.head('quarantine', `${p}/x`), null)
      t.same(await leftovers(p), [])
    })

    t.test('a body destroyed without an error (client went away) rejects and leaves nothing', async (t) => {
      const p = prefix()
      const err = await put(`${p}/x`, generatedBody(20 * MB, { destroyAt: 12 * MB, gate: storedBefore(p) }).stream).catch((e: unknown) => e)
      t.type(err, Error, 'rejects')
      t.notOk(err instanceof StoreUnavailableError, 'the body failed, not the store')
      t.equal(await store.head('quarantine', `${p}/x`), null)
      t.same(await leftovers(p), [])
    })

    t.test('aborting while the body stalls rejects with AbortError, promptly, and leaves nothing', async (t) => {
      const p = prefix()
      const body = generatedBody(20 * MB, { stallAt: 12 * MB })
      const ac = new AbortController()
      const putting = put(`${p}/x`, body.stream, ac.signal)
      await waitFor(async () => body.produced() >= 12 * MB, 'the body to stall')
      if (listIncomplete) await waitFor(async () => (await leftovers(p)).some((w) => w.bytes > 0), 'bytes stored')
      const started = Date.now()
      ac.abort(new Error('client went away'))
      await t.rejects(putting, { name: 'AbortError' })
      t.ok(Date.now() - started < 10_000, 'the abort does not wait for the stalled body')
      t.ok(body.stream.destroyed, 'the stalled body is released')
      t.equal(await store.head('quarantine', `${p}/x`), null)
      t.same(await leftovers(p), [])
    })

    t.test('open uploads: a stalled put is listed by key, paged, and aborting it removes what it wrote', async (t) => {
      const p = prefix()
      const keys = [`${p}/a`, `${p}/b`]
      const bodies = keys.map(() => generatedBody(20 * MB, { stallAt: 12 * MB }))
      const ac = new AbortController()
      const putting = keys.map((key, i) => put(key, (bodies[i] as GeneratedBody).stream, ac.signal).catch((err: unknown) => err))
      const listAll = async (): Promise<{ key: string; uploadId: string; startedAt: number }[]> => {
        const all = []
        let token: string | null = null
        for (let page = 0; page < 10; page++) {
          const got = await store.listOpenUploads('quarantine', p, token, 1)
          all.push(...got.uploads)
          token = got.nextToken
          if (token === null) break
        }
        return all
      }
      await waitFor(async () => (await listAll()).length === 2, 'both stalled puts listed as open uploads')
      const open = await listAll()
      // Paged by limit (moto ignores MaxUploads and answers one page): each listed once either way.
      t.same(open.map((u) => u.key).sort(), keys, 'listed under their keys, each once across the pages')
      // moto answers a fixed Initiated date in 2010: only "not in the future" holds everywhere.
      for (const u of open) t.ok(Number.isFinite(u.startedAt) && u.startedAt <= Date.now() + 60_000, `${u.key} has a start time`)
      t.same((await store.listOpenUploads('quarantine', `${p}/a`, null, 10)).uploads.map((u) => u.key), [`${p}/a`], 'a prefix selects')
      const first = open[0] as { key: string; uploadId: string }
      await store.abortOpenUpload('quarantine', first)
      await store.abortOpenUpload('quarantine', first) // idempotent
      t.same((await listAll()).map((u) => u.key), keys.filter((k) => k !== first.key), 'the aborted one is gone, the other is still open')
      ac.abort(new Error('test done'))
      await Promise.all(putting)
      t.same(await listAll(), [], 'nothing open once the puts ended')
      for (const key of keys) t.equal(await store.head('quarantine', key), null)
    })

    t.test('a signal aborted before the put starts rejects and writes nothing', async (t) => {
      const key = `${prefix()}/x`
      const body = generatedBody(1 * MB, {})
      await t.rejects(put(key, body.stream, AbortSignal.abort()), { name: 'AbortError' })
      t.equal(await store.head('quarantine', key), null)
      t.ok(body.stream.destroyed, 'the body is released')
    })

    t.test('aborting a get ends its body with an error', async (t) => {
      const key = `${prefix()}/read`
      await put(key, generatedBody(8 * MB, {}).stream)
      const ac = new AbortController()
      const { body } = await store.get('quarantine', key, ac.signal)
      let read = 0
      await t.rejects(
        (async () => {
          for await (const chunk of body) {
            read += (chunk as Buffer).length
            if (read > 1 * MB) ac.abort()
          }
        })(),
        { name: 'AbortError' }
      )
      t.ok(read < 8 * MB)
    })

    t.test('keys with slashes and unusual characters', async (t) => {
      const p = prefix()
      const keys = [`${p}/a/b/c/file name+with (odd) chars & ü.pdf`, `${p}/a/b/sibling.txt`, `${p}/.hidden`, `${p}/a/b/c/%2F..%2F`]
      for (const key of keys) await put(key, Readable.from([Buffer.from(key)]))
      for (const key of keys) {
        t.same(await digest((await store.get('quarantine', key)).body), { sha256: sha256(Buffer.from(key)), bytes: Buffer.byteLength(key) }, key)
        await store.copy('quarantine', 'production', key, { v: '1' })
        t.match(await store.head('production', key), { size: Buffer.byteLength(key) })
      }
      t.match(store.location('production', keys[0] as string), { key: keys[0] })
    })

    t.test('check() reports both areas healthy', async (t) => {
      const health = await store.check()
      t.same(
        health.map((h) => [h.area, h.ok]),
        [
          ['quarantine', true],
          ['production', true]
        ],
        JSON.stringify(health)
      )
    })
  })
}

export interface GeneratedBody {
  stream: Readable
  produced(): number
  /** SHA-256 of everything produced; call once the stream has ended. */
  sha256(): string
}

/**
 * Random bytes produced on demand, 64 KiB at a time, so the test itself never holds the body.
 * failAt: errors there. destroyAt: destroyed there without an error. stallAt: never produces more.
 * gate: waits for `open()` before producing past `at`.
 */
export function generatedBody(
  size: number,
  opts: { failAt?: number; destroyAt?: number; stallAt?: number; gate?: { at: number; open: () => Promise<void> } }
): GeneratedBody {
  const hash = createHash('sha256')
  let produced = 0
  let gate = opts.gate
  let waiting = false
  const stream = new Readable({
    highWaterMark: 64 * 1024,
    read() {
      if (waiting) return
      if (gate && produced >= gate.at) {
        waiting = true
        gate.open().then(
          () => {
            gate = undefined
            waiting = false
            pushNext()
          },
          (err: unknown) => stream.destroy(err as Error)
        )
        return
      }
      pushNext()
    }
  })
  const pushNext = (): void => {
    if (opts.failAt !== undefined && produced >= opts.failAt) return void stream.destroy(new Error('body failed mid-way'))
    if (opts.destroyAt !== undefined && produced >= opts.destroyAt) return void stream.destroy()
    if (opts.stallAt !== undefined && produced >= opts.stallAt) return
    const n = Math.min(64 * 1024, size - produced)
    if (n <= 0) return void stream.push(null)
    const chunk = randomBytes(n)
    hash.update(chunk)
    produced += n
    stream.push(chunk)
  }
  return { stream, produced: () => produced, sha256: () => hash.digest('hex') }
}

export async function digest(body: Readable): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256')
  let bytes = 0
  for await (const chunk of body) {
    hash.update(chunk as Buffer)
    bytes += (chunk as Buffer).length
  }
  return { sha256: hash.digest('hex'), bytes }
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

export async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(50)
  }
}
