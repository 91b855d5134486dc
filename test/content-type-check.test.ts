import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import t from 'tap'
import { isMediaRange, withinAllowed } from '../src/domain/media-types.ts'
import { ContentTypePolicy, detectType, sniffContentType, SNIFF_BYTES } from '../src/services/content-type-check.ts'
import { looksLikeCsv, markupType, utf8Text } from '../src/services/text-sniffing.ts'

const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489', 'hex')
const PDF = Buffer.from('%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n')
const ELF = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), Buffer.alloc(56)])

/** Streams `bytes` in chunks of `size`, sniffs them, and collects what passed through. */
async function sniff(bytes: Buffer, size: number): Promise<{ type: string; passed: Buffer }> {
  const chunks: Buffer[] = []
  for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size))
  const { output, detected } = sniffContentType(Readable.from(chunks, { objectMode: false }))
  const passed: Buffer[] = []
  await pipeline(output, new Writable({ write: (c: Buffer, _e, cb) => (passed.push(c), cb()) }))
  return { type: await detected, passed: Buffer.concat(passed) }
}

t.test('binary types come from file-type, whatever the chunking', async (t) => {
  for (const size of [1, 3, 7, 64, 5000]) {
    t.equal((await sniff(Buffer.concat([PNG, Buffer.alloc(9000, 7)]), size)).type, 'image/png', `png, chunks of ${size}`)
    t.equal((await sniff(PDF, size)).type, 'application/pdf', `pdf, chunks of ${size}`)
    t.equal((await sniff(ELF, size)).type, 'application/x-elf', `elf, chunks of ${size}`)
  }
  t.equal((await sniff(Buffer.concat([Buffer.from('MZ'), Buffer.alloc(200, 1)]), 10)).type, 'application/x-msdownload')
})

t.test('every byte passes through unchanged', async (t) => {
  const bytes = Buffer.alloc(3 * SNIFF_BYTES + 17)
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31) % 251
  for (const size of [1, 100, SNIFF_BYTES, SNIFF_BYTES + 1, 65536]) {
    const { passed } = await sniff(bytes, size)
    t.ok(passed.equals(bytes), `chunks of ${size}`)
  }
})

t.test('text rules: UTF-8 without NUL, a multibyte character cut by the sample', async (t) => {
  // 'é' is two bytes: after one 'a', the sample's end (4100) falls inside the 2050th.
  const accents = Buffer.from('a' + 'é'.repeat(2051) + ' end')
  t.equal((await sniff(accents, 1)).type, 'text/plain', 'a character cut in two at the sample end is still text')
  t.equal(utf8Text(accents.subarray(0, SNIFF_BYTES), false), null, 'the same cut at the end of a file is not UTF-8')
  t.equal((await sniff(Buffer.from('hello\0world'), 4)).type, 'application/octet-stream', 'a NUL byte is not text')
  t.equal((await sniff(Buffer.from([0x68, 0xff, 0xfe, 0x69]), 2)).type, 'application/octet-stream', 'invalid UTF-8')
  t.equal((await sniff(Buffer.from('\ufeffplain words\nmore\n'), 3)).type, 'text/plain', 'a BOM is dropped')
  t.equal(await detectType(new Uint8Array(), false), 'application/octet-stream', 'nothing')
})

t.test('CSV: consistent comma-separated columns', async (t) => {
  t.equal((await sniff(Buffer.from('name,city,note\nAnna,Zürich,"a, b"\nBo,Köln,"two\nlines"\n'), 5)).type, 'text/csv')
  t.notOk(looksLikeCsv('one,two\nthree\n', false), 'columns differ')
  t.notOk(looksLikeCsv('a,b\n', false), 'a single record')
  t.notOk(looksLikeCsv('a\nb\nc\n', false), 'a single column')
  t.ok(looksLikeCsv('a,b\r\nc,d\r\ne,', true), 'the record the sample cuts is left out')
  const long = Buffer.from('id,value\n' + Array.from({ length: 600 }, (_, i) => `${i},${'x'.repeat(i % 9)}`).join('\n'))
  t.equal((await sniff(long, 100)).type, 'text/csv', 'longer than the sample')
})

t.test('markup: SVG, HTML and XML are named, never plain text', async (t) => {
  const svg = '<?xml version="1.0"?>\n<!-- drawn -->\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "x">\n<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
  t.equal((await sniff(Buffer.from(svg), 3)).type, 'image/svg+xml', 'an SVG with an XML declaration (file-type says XML)')
  t.equal((await sniff(Buffer.from('  <svg viewBox="0 0 1 1"></svg>'), 3)).type, 'image/svg+xml')
  t.equal((await sniff(Buffer.from('<!DOCTYPE html><title>x</title>'), 3)).type, 'text/html')
  t.equal((await sniff(Buffer.from('\n<html><body>hi</body></html>'), 3)).type, 'text/html')
  t.equal((await sniff(Buffer.from('<script>alert(1)</script>'), 3)).type, 'text/html')
  t.equal((await sniff(Buffer.from('<?xml version="1.0"?><note>x</note>'), 3)).type, 'application/xml')
  t.equal((await sniff(Buffer.from('<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"/>'), 3)).type, 'text/html')
  t.equal(markupType('<notes are plain text'), null)
  t.equal(markupType('a < b'), null)
})

t.test('a failing source fails the output and rejects detected', async (t) => {
  const source = new Readable({ read() {} })
  const { output, detected } = sniffContentType(source)
  source.push(Buffer.from('abc'))
  source.destroy(new Error('client gone'))
  await t.rejects(detected, /client gone/)
  await t.rejects(pipeline(output, new Writable({ write: (_c, _e, cb) => cb() })), /client gone/)
})

t.test('the policy', async (t) => {
  const any = new ContentTypePolicy([])
  t.same(any.judge('text/html', null), { allowed: true, attachment: true }, 'no list: any type, active ones as attachments')
  t.same(any.judge('image/png', null), { allowed: true, attachment: false })
  t.same(any.judge('image/png', ['application/pdf']), { allowed: false, attachment: false }, 'a token narrows')
  const images = new ContentTypePolicy(['image/*', 'application/pdf', 'text/csv'])
  t.ok(images.judge('image/png', null).allowed)
  t.ok(images.judge('application/pdf', ['image/png', 'application/pdf']).allowed)
  t.notOk(images.judge('application/pdf', ['image/*']).allowed, 'the token allows images only')
  t.notOk(images.judge('image/svg+xml', null).allowed, 'no wildcard covers SVG')
  t.notOk(images.judge('text/plain', null).allowed)
  t.notOk(new ContentTypePolicy(['*/*']).judge('text/html', null).allowed, 'nor HTML')
  t.notOk(new ContentTypePolicy(['application/*']).judge('application/xml', null).allowed, 'nor XML')
  t.same(new ContentTypePolicy(['image/*', 'image/svg+xml']).judge('image/svg+xml', null), { allowed: true, attachment: true })
  t.notOk(new ContentTypePolicy(['image/*', 'image/svg+xml']).judge('image/svg+xml', ['image/*']).allowed, 'a token wildcard does not cover SVG either')
  t.ok(new ContentTypePolicy(['Image/PNG']).judge('image/png; x=y', null).allowed, 'case and parameters do not matter')
})

t.test('a token type list must lie within the gateway list', async (t) => {
  t.ok(withinAllowed(['text/html'], []), 'no gateway list: anything')
  t.ok(withinAllowed(['image/png', 'image/*'], ['image/*']))
  t.notOk(withinAllowed(['image/svg+xml'], ['image/*']), 'SVG must be named')
  t.ok(withinAllowed(['image/svg+xml'], ['image/svg+xml']))
  t.notOk(withinAllowed(['image/*'], ['image/png']), 'a wildcard is wider than one type')
  t.ok(withinAllowed(['image/*'], ['*/*']))
  t.notOk(withinAllowed(['application/pdf'], ['image/*']))
  t.ok(isMediaRange('image/*') && isMediaRange('*/*') && isMediaRange('Application/Vnd.ms-excel'))
  t.notOk(isMediaRange('image') || isMediaRange('*/png') || isMediaRange('image/png; q=1'))
})
