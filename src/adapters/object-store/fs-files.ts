import { randomUUID } from 'node:crypto'
import { constants } from 'node:fs'
import { access, mkdir, open, rename, stat, unlink, writeFile } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'

// File-system steps of the fs object store: key checks and crash-safe (temp file, fsync, rename) writes.

/** A key that could escape the root, or that the directory layout cannot hold. */
export class InvalidKeyError extends Error {
  override name = 'InvalidKeyError'
}

/** Rejects keys that could leave the area directory or that a file system cannot name. */
export function validateKey(key: string): string[] {
  if (key === '' || key.length > 1024) throw new InvalidKeyError('object keys must have 1 to 1024 characters')
  if (key.includes('\0') || key.includes('\\')) throw new InvalidKeyError(`object key ${JSON.stringify(key)} contains NUL or a backslash`)
  const segments = key.split('/')
  if (segments.some((s) => s === '' || s === '.' || s === '..')) {
    throw new InvalidKeyError(`object key ${JSON.stringify(key)} is absolute or has an empty, "." or ".." segment`)
  }
  // NAME_MAX is 255 bytes; the temp-file name adds about 40.
  if (segments.some((s) => Buffer.byteLength(s) > 200)) throw new InvalidKeyError(`object key ${JSON.stringify(key)} has a segment longer than 200 bytes`)
  return segments
}

export function tempPath(target: string): string {
  return join(dirname(target), `.${basename(target)}.${randomUUID()}.tmp`)
}

const TEMP_NAME = /^\.(.+)\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.tmp$/

/** The key a temp file (a relative path from tempPath) was written for; null for any other file. */
export function keyOfTemp(path: string): string | null {
  const slash = path.lastIndexOf('/')
  const match = TEMP_NAME.exec(path.slice(slash + 1))
  return match ? `${path.slice(0, slash + 1)}${match[1]}` : null
}

export async function makeParents(key: string, ...paths: string[]): Promise<void> {
  try {
    for (const p of paths) await mkdir(dirname(p), { recursive: true })
  } catch (err) {
    throw conflictOr(err, key)
  }
}

/** rename is atomic within a directory; the directory fsync makes the new name survive a crash. */
export async function commit(key: string, tmp: string, target: string): Promise<void> {
  await rename(tmp, target).catch((err: unknown) => {
    throw conflictOr(err, key)
  })
  await fsyncPath(dirname(target))
}

/** A key that is also the prefix of another ("a/b" and "a/b/c") cannot be both a file and a directory. */
export function conflictOr(err: unknown, key: string): unknown {
  const code = (err as NodeJS.ErrnoException).code
  if (code === 'ENOTDIR' || code === 'EEXIST' || code === 'EISDIR' || code === 'ENOTEMPTY') {
    return new InvalidKeyError(`object key ${key} conflicts with another key: in the fs store a key cannot also be a prefix of other keys`, { cause: err })
  }
  return err
}

export async function writeAtomic(key: string, path: string, text: string): Promise<void> {
  const tmp = tempPath(path)
  try {
    await writeFile(tmp, text, { flag: 'wx', flush: true })
    await rename(tmp, path)
  } catch (err) {
    await unlink(tmp).catch(() => undefined)
    throw conflictOr(err, key)
  }
}

export async function checkDirs(setup: string | undefined, ...dirs: string[]): Promise<{ ok: boolean; detail?: string }> {
  for (const dir of dirs) {
    try {
      if (!(await stat(dir)).isDirectory()) return { ok: false, detail: `${dir} is not a directory` }
      await access(dir, constants.W_OK)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code !== 'ENOENT' && code !== 'ENOTDIR') return { ok: false, detail: `directory ${dir} is not writable (${code ?? errorText(err)})` }
      const why = setup === undefined ? '' : ` and cannot be created: ${setup}`
      return { ok: false, detail: `directory ${dir} does not exist${why}` }
    }
  }
  return { ok: true }
}

export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
