import type { ScannerEndpoint } from '../ports/scanner.ts'

/**
 * Parses `tcp://host:port` or `unix:///absolute/path`; throws on anything else. Configuration
 * calls it once per GW_CLAMD entry, so the scanner adapter only ever gets parsed endpoints.
 */
export function parseClamdEndpoint(url: string): ScannerEndpoint {
  const bad = (why: string) => new Error(`${JSON.stringify(url)} is not tcp://host:port or unix:///path (${why})`)
  if (url.startsWith('unix://')) {
    const path = url.slice('unix://'.length)
    if (!path.startsWith('/')) throw bad('the socket path must be absolute')
    if (path === '/') throw bad('missing socket path')
    return { kind: 'unix', url, path }
  }
  if (!url.startsWith('tcp://')) throw bad('unknown scheme')
  if (!/^tcp:\/\/(\[[0-9A-Fa-f:.]+\]|[^/:@[\]]+):\d{1,5}$/.test(url)) throw bad('expected a host and a port, nothing else')
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw bad('not a URL')
  }
  // URL keeps IPv6 brackets; net.connect wants the bare address.
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1')
  return { kind: 'tcp', url: `tcp://${parsed.host}`, host, port: Number(parsed.port) }
}
