import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { KvStore, Upload } from '@tus/utils'

/**
 * @tus/file-store's upload info, kept as `<key>.info` beside the upload's file in the quarantine
 * directory: the same layout as @tus/s3-store's, so the orphan sweeper treats both alike.
 */
export class InfoFileStore implements KvStore<Upload> {
  readonly #directory: string

  constructor(directory: string) {
    this.#directory = directory
  }

  async get(key: string): Promise<Upload | undefined> {
    try {
      return JSON.parse(await readFile(this.#path(key), 'utf8')) as Upload
    } catch {
      return undefined
    }
  }

  async set(key: string, value: Upload): Promise<void> {
    const path = this.#path(key)
    await mkdir(dirname(path), { recursive: true })
    await writeFile(path, JSON.stringify(value))
  }

  async delete(key: string): Promise<void> {
    await rm(this.#path(key), { force: true })
  }

  /** Keys were checked by the file store (inside its directory) before they reach here. */
  #path(key: string): string {
    return join(this.#directory, `${key}.info`)
  }
}
