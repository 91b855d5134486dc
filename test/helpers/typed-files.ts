import { randomBytes } from 'node:crypto'
import { zip } from './zip.ts'

/** Files whose content says what they are, whatever name and type a client gives them. */
export const typedFiles = {
  pdf: (): Buffer =>
    Buffer.from(
      `%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n` +
        `trailer << /Root 1 0 R >>\n%${randomBytes(8).toString('hex')}\n%%EOF\n`
    ),
  /** An ELF header (a Linux executable) followed by padding. */
  elf: (size = 4096): Buffer => Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), randomBytes(size - 8)]),
  /** A DOS/Windows executable's "MZ" start followed by padding. */
  exe: (size = 4096): Buffer => Buffer.concat([Buffer.from('MZ'), randomBytes(size - 2)]),
  html: (): Buffer => Buffer.from(`<!DOCTYPE html>\n<html><body><p>hello ${randomBytes(4).toString('hex')}</p><script>document.title = 'x'</script></body></html>\n`),
  svg: (): Buffer =>
    Buffer.from(
      `<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">` +
        `<script>alert(document.domain)</script><rect width="10" height="10"/><!-- ${randomBytes(4).toString('hex')} --></svg>\n`
    ),
  csv: (): Buffer => Buffer.from(`name,city,amount\nZoë,Zürich,12.50\n"Ørsted, A",Århus,7\nJosé,São Paulo,${randomBytes(2).readUInt16BE()}\n`),
  zip: (): Buffer => zip([{ name: 'notes.txt', data: Buffer.from(`hello ${randomBytes(4).toString('hex')}\n`) }])
}
