import { randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'

export const KiB = 1024
export const MiB = 1024 * KiB
export const GiB = 1024 * MiB

const BLOCK = randomBytes(MiB)
const CHUNK = 64 * KiB
let counter = 0

/** A run-wide unique label: every file's first bytes differ, so clamd's clean cache never answers. */
export function uniqueLabel(prefix: string): string {
  counter += 1
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${counter}-${randomBytes(8).toString('hex')}`
}

/**
 * `size` bytes whose first line is `label`, the rest slices of one random megabyte: unique per
 * file (clamd caches by content hash) and generated as a stream, never held whole in memory.
 */
export function contentStream(size: number, label: string): Readable {
  const head = Buffer.from(`${label}\n`).subarray(0, size)
  return Readable.from(chunks(size, head), { objectMode: false })
}

function* chunks(size: number, head: Buffer): Generator<Buffer> {
  if (head.length > 0) yield head
  let sent = head.length
  while (sent < size) {
    const offset = sent % MiB
    const n = Math.min(CHUNK, size - sent, MiB - offset)
    yield BLOCK.subarray(offset, offset + n)
    sent += n
  }
}

/** The same bytes as contentStream, whole (for small files). */
export function contentBuffer(size: number, label: string): Buffer {
  return Buffer.concat([...chunks(size, Buffer.from(`${label}\n`).subarray(0, size))])
}

export async function writeContentFile(path: string, size: number, label: string): Promise<void> {
  await pipeline(contentStream(size, label), createWriteStream(path))
}

export function formatBytes(bytes: number): string {
  if (bytes >= GiB && bytes % GiB === 0) return `${bytes / GiB} GiB`
  if (bytes >= MiB && bytes % MiB === 0) return `${bytes / MiB} MiB`
  if (bytes >= KiB && bytes % KiB === 0) return `${bytes / KiB} KiB`
  return `${bytes} B`
}
