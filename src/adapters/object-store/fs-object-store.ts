import { constants, createWriteStream } from 'node:fs'
import { copyFile, mkdir, open, readdir, readFile, stat, unlink } from 'node:fs/promises'
import { basename, dirname, join, resolve, sep } from 'node:path'
import { addAbortSignal, type Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import {
  ObjectChangedError,
  ObjectNotFoundError,
  StoreUnavailableError,
  type Area,
  type ObjectPage,
  type OpenUpload,
  type OpenUploadPage,
  type AreaHealth,
  type CopyOptions,
  type ObjectInfo,
  type ObjectLocation,
  type ObjectStore,
  type PutOptions
} from '../../ports/object-store.ts'
import { abortError } from './abort-error.ts'
import { guardBody } from './body-guard.ts'
import { checkDirs, commit, errorText, fsyncPath, keyOfTemp, makeParents, tempPath, validateKey, writeAtomic } from './fs-files.ts'
import { sanitizeTags } from './tags.ts'

export { InvalidKeyError } from './fs-files.ts'

export interface FsObjectStoreOptions {
  /** Holds quarantine/ and production/ (the objects) and quarantine.meta/ and production.meta/ (their sidecars). */
  root: string
}

interface Sidecar {
  contentType: string
  contentDisposition?: string | undefined
  metadata: Record<string, string>
  tags: Record<string, string>
}

const AREAS: readonly Area[] = ['quarantine', 'production']
const DEFAULT_CONTENT_TYPE = 'application/octet-stream'
const MISSING = new Set(['ENOENT', 'ENOTDIR', 'EISDIR'])
const DISK_TROUBLE = new Set(['ENOSPC', 'EIO', 'EROFS', 'EMFILE', 'ENFILE', 'EDQUOT'])

/**
 * Object store on a local directory, for development and single-node setups. Sidecars live in a
 * parallel tree with the same relative path as their object, so no key can ever name a sidecar.
 */
export class FsObjectStore implements ObjectStore {
  readonly #root: string
  /** Puts write each chunk as it comes: no part buffers. */
  readonly bufferedBytes = 0
  #ready: Promise<void> | undefined

  constructor(options: FsObjectStoreOptions) {
    this.#root = resolve(options.root)
  }

  /** Creates the area directories; runs lazily before the first operation, so calling it is optional. */
  async init(): Promise<void> {
    this.#ready ??= Promise.all(
      AREAS.flatMap((a) => [this.#dir(a), this.#metaDir(a)]).map((d) => mkdir(d, { recursive: true }))
    ).then(
      () => undefined,
      (err: unknown) => {
        this.#ready = undefined // try again next time: the disk may come back
        throw err
      }
    )
    return this.#ready
  }

  location(area: Area, key: string): ObjectLocation {
    return { bucket: this.#dir(area), key }
  }

  async put(area: Area, key: string, body: Readable, options: PutOptions): Promise<void> {
    const { signal } = options
    const guarded = guardBody(body)
    let tmp: string | undefined
    try {
      const { data, meta } = this.#paths(area, key)
      await this.init()
      await makeParents(key, data, meta)
      tmp = tempPath(data)
      // flush: fsync before close, so the rename below publishes durable bytes.
      await pipeline(guarded.stream, createWriteStream(tmp, { flags: 'wx', flush: true }), { signal })
      signal?.throwIfAborted()
      // Sidecar first: the object exists once its data file does, and then its sidecar is already there.
      await writeAtomic(key, meta, JSON.stringify({ contentType: options.contentType, metadata: options.metadata, tags: {} }))
      await commit(key, tmp, data)
    } catch (err) {
      const bodyFailure = guarded.failure()
      guarded.release()
      if (tmp !== undefined) await unlink(tmp).catch(() => undefined)
      if (signal?.aborted) throw abortError(signal)
      if (bodyFailure !== undefined) throw bodyFailure
      // The temp file was removed under the put (the orphan sweeper took it): a new try may work.
      if (tmp !== undefined && isMissing(err)) throw new StoreUnavailableError(`put ${area}/${key}: the write was aborted`, { cause: err })
      throw storeError(err, `put ${area}/${key}`)
    }
  }

  async get(area: Area, key: string, signal?: AbortSignal): Promise<{ body: Readable; info: ObjectInfo }> {
    const { data, meta } = this.#paths(area, key)
    if (signal?.aborted) throw abortError(signal)
    const file = await open(data, 'r').catch((err: unknown) => this.#fail(err, area, key, 'get'))
    try {
      const st = await file.stat()
      if (!st.isFile()) throw new ObjectNotFoundError(area, key)
      const sidecar = await readSidecar(meta)
      const body = file.createReadStream()
      if (signal) addAbortSignal(signal, body)
      return { body, info: { size: st.size, version: versionOf(st), contentType: sidecar.contentType, metadata: sidecar.metadata, ...dispositionOf(sidecar) } }
    } catch (err) {
      await file.close()
      throw err
    }
  }

  async head(area: Area, key: string): Promise<ObjectInfo | null> {
    const { data, meta } = this.#paths(area, key)
    const st = await stat(data).catch((err: unknown) => (isMissing(err) ? null : this.#fail(err, area, key, 'head')))
    if (!st?.isFile()) return null
    const sidecar = await readSidecar(meta)
    return { size: st.size, version: versionOf(st), contentType: sidecar.contentType, metadata: sidecar.metadata, ...dispositionOf(sidecar) }
  }

  async copy(from: Area, to: Area, key: string, tags: Record<string, string>, options: CopyOptions = {}): Promise<void> {
    options.signal?.throwIfAborted()
    const clean = sanitizeTags(tags)
    const src = this.#paths(from, key)
    const dst = this.#paths(to, key)
    const source = await this.head(from, key)
    if (!source) throw new ObjectNotFoundError(from, key)
    // Puts replace files by rename, so a changed object has a new inode and mtime.
    if (options.ifVersion !== undefined && source.version !== options.ifVersion) throw new ObjectChangedError(from, key)
    const sidecar = await readSidecar(src.meta)
    const tmp = tempPath(dst.data)
    try {
      await this.init()
      await makeParents(key, dst.data, dst.meta)
      // copyFile may share extents (reflink); the fsync makes the copy durable before it becomes visible.
      await copyFile(src.data, tmp, constants.COPYFILE_EXCL)
      await fsyncPath(tmp)
      const type = options.contentType === undefined ? {} : { contentType: options.contentType, contentDisposition: options.contentDisposition }
      await writeAtomic(key, dst.meta, JSON.stringify({ ...sidecar, ...type, tags: clean }))
      await commit(key, tmp, dst.data)
    } catch (err) {
      await unlink(tmp).catch(() => undefined)
      this.#fail(err, from, key, `copy to ${to}`)
    }
  }

  async setTags(area: Area, key: string, tags: Record<string, string>, options: { signal?: AbortSignal } = {}): Promise<void> {
    options.signal?.throwIfAborted()
    const clean = sanitizeTags(tags)
    if (!(await this.head(area, key))) throw new ObjectNotFoundError(area, key)
    const { meta } = this.#paths(area, key)
    await writeAtomic(key, meta, JSON.stringify({ ...(await readSidecar(meta)), tags: clean })).catch((err: unknown) =>
      this.#fail(err, area, key, 'setTags')
    )
  }

  async getTags(area: Area, key: string): Promise<Record<string, string>> {
    if (!(await this.head(area, key))) throw new ObjectNotFoundError(area, key)
    return (await readSidecar(this.#paths(area, key).meta)).tags
  }

  /** Walks the whole area and sorts it for each page: fine for the first-run store this is, not for millions of files. */
  async list(area: Area, prefix: string, continuationToken: string | null, limit: number): Promise<ObjectPage> {
    const { dir, names } = await this.#walk(area, `list ${area}/${prefix}`)
    const keys = names
      .filter((k) => k.startsWith(prefix) && (continuationToken === null || k > continuationToken) && !k.split('/').some((seg) => seg.startsWith('.')))
      .sort()
    const objects: ObjectPage['objects'] = []
    for (const key of keys) {
      if (objects.length === limit) break
      const st = await stat(join(dir, key)).catch(() => null)
      if (st?.isFile()) objects.push({ key, size: st.size, modifiedAt: st.mtimeMs })
    }
    const last = objects.at(-1)
    return { objects, nextToken: last && keys.indexOf(last.key) < keys.length - 1 ? last.key : null }
  }

  /** Every path in the area, '/'-separated, read in one walk. */
  async #walk(area: Area, what: string): Promise<{ dir: string; names: string[] }> {
    await this.init()
    const dir = this.#dir(area)
    try {
      return { dir, names: (await readdir(dir, { recursive: true })).map((n) => String(n).split(sep).join('/')) }
    } catch (err) {
      throw storeError(err, what)
    }
  }

  async delete(area: Area, key: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    options.signal?.throwIfAborted()
    const { data, meta } = this.#paths(area, key)
    // Data first: once it is gone the object is gone, whatever happens to the sidecar.
    for (const path of [data, meta]) {
      await unlink(path).catch((err: unknown) => {
        if (!isMissing(err)) throw storeError(err, `delete ${area}/${key}`)
      })
    }
  }

  /**
   * Temp files a killed process left (a finished or failed put removes its own). uploadId is the
   * temp file's path in the area; startedAt its mtime, so a write in progress always looks recent.
   */
  async listOpenUploads(area: Area, prefix: string, continuationToken: string | null, limit: number): Promise<OpenUploadPage> {
    const { dir, names } = await this.#walk(area, `list open uploads ${area}/${prefix}`)
    const temps = names
      .map((path) => ({ path, key: keyOfTemp(path) }))
      .filter((t): t is { path: string; key: string } => t.key !== null && t.key.startsWith(prefix) && (continuationToken === null || t.path > continuationToken))
      .sort((a, b) => (a.path < b.path ? -1 : 1))
    const uploads: OpenUpload[] = []
    for (const t of temps) {
      if (uploads.length === limit) break
      const st = await stat(join(dir, t.path)).catch(() => null)
      if (st?.isFile()) uploads.push({ key: t.key, uploadId: t.path, startedAt: st.mtimeMs })
    }
    const last = uploads.at(-1)
    return { uploads, nextToken: last && temps.findIndex((t) => t.path === last.uploadId) < temps.length - 1 ? last.uploadId : null }
  }

  async abortOpenUpload(area: Area, upload: Pick<OpenUpload, 'key' | 'uploadId'>): Promise<void> {
    // Only a temp file of this key may be removed: the id comes from a listing, but is checked all the same.
    if (keyOfTemp(upload.uploadId) !== upload.key) throw new RangeError(`${upload.uploadId} is not an open upload of ${upload.key}`)
    const { data } = this.#paths(area, upload.key)
    await unlink(join(dirname(data), basename(upload.uploadId))).catch((err: unknown) => {
      if (!isMissing(err)) throw storeError(err, `abort open upload ${area}/${upload.key}`)
    })
  }

  async check(): Promise<AreaHealth[]> {
    // Creating the directories is part of the check: a root that cannot hold them is the problem to report.
    const setup = await this.init().then(
      () => undefined,
      (err: unknown) => errorText(err)
    )
    return Promise.all(AREAS.map(async (area) => ({ area, ...(await checkDirs(setup, this.#dir(area), this.#metaDir(area))) })))
  }

  async close(): Promise<void> {}

  #dir(area: Area): string {
    return join(this.#root, area)
  }

  #metaDir(area: Area): string {
    return join(this.#root, `${area}.meta`)
  }

  #paths(area: Area, key: string): { data: string; meta: string } {
    const segments = validateKey(key)
    return { data: join(this.#dir(area), ...segments), meta: join(this.#metaDir(area), ...segments) }
  }

  #fail(err: unknown, area: Area, key: string, op: string): never {
    if (isMissing(err)) throw new ObjectNotFoundError(area, key)
    throw storeError(err, `${op} ${area}/${key}`)
  }
}

async function readSidecar(path: string): Promise<Sidecar> {
  try {
    const parsed = JSON.parse(await readFile(path, 'utf8')) as Partial<Sidecar>
    const disposition = parsed.contentDisposition === undefined ? {} : { contentDisposition: parsed.contentDisposition }
    return { contentType: parsed.contentType ?? DEFAULT_CONTENT_TYPE, ...disposition, metadata: parsed.metadata ?? {}, tags: parsed.tags ?? {} }
  } catch (err) {
    // Files put into the directory by hand have no sidecar.
    if (isMissing(err)) return { contentType: DEFAULT_CONTENT_TYPE, metadata: {}, tags: {} }
    throw err
  }
}

function dispositionOf(sidecar: Sidecar): { contentDisposition?: string } {
  return sidecar.contentDisposition === undefined ? {} : { contentDisposition: sidecar.contentDisposition }
}

function isMissing(err: unknown): boolean {
  return MISSING.has((err as NodeJS.ErrnoException | undefined)?.code ?? '')
}

function storeError(err: unknown, what: string): unknown {
  if (!DISK_TROUBLE.has((err as NodeJS.ErrnoException | undefined)?.code ?? '')) return err
  return new StoreUnavailableError(`${what}: ${errorText(err)}`, { cause: err })
}

/** A content version for files: a put renames a new file into place, so inode and mtime change with the bytes. */
function versionOf(st: { ino: number; size: number; mtimeMs: number }): string {
  return `${st.ino.toString(36)}-${st.size.toString(36)}-${Math.round(st.mtimeMs * 1000).toString(36)}`
}
