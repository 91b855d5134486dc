import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { resolve } from 'node:path'

/**
 * Files the gateway serves as they are, read once at start-up by the composition root and handed
 * to http/ as text: the routes never touch the disk.
 */
const root = resolve(import.meta.dirname, '..')
const require = createRequire(import.meta.url)

/** openapi.yaml as committed (`npm run openapi` writes it from the routes' schemas). */
export function readOpenApiDocument(): string {
  return readFileSync(resolve(root, 'openapi.yaml'), 'utf8')
}

/** The demo page (GW_DEMO) and its assets: its own files in src/http/demo/, and Uppy's bundled build. */
export function readDemoFiles(): { page: string; assets: Map<string, { contentType: string; body: string }> } {
  const own = (name: string): string => readFileSync(resolve(root, 'src/http/demo', name), 'utf8')
  const uppy = (name: string): string => readFileSync(require.resolve(`uppy/dist/${name}`), 'utf8')
  const js = 'text/javascript; charset=utf-8'
  const css = 'text/css; charset=utf-8'
  return {
    page: own('index.html'),
    assets: new Map([
      ['demo.js', { contentType: js, body: own('demo.js') }],
      ['demo.css', { contentType: css, body: own('demo.css') }],
      ['uppy.min.js', { contentType: js, body: uppy('uppy.min.js') }],
      ['uppy.min.css', { contentType: css, body: uppy('uppy.min.css') }]
    ])
  }
}
