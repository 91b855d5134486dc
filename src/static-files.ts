import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'

/**
 * Files the gateway serves as they are, read once at start-up by the composition root and handed
 * to http/ as text: the routes never touch the disk.
 */
const root = resolve(import.meta.dirname, '..')

/** openapi.yaml as committed (`npm run openapi` writes it from the routes' schemas). */
export function readOpenApiDocument(): string {
  return readFileSync(resolve(root, 'openapi.yaml'), 'utf8')
}
