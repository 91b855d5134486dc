/** What clamd's VERSION says per endpoint, asked again once the cached answer is older than maxAgeMs. */
import { ScannerError, type EngineVersion, type ScannerEndpoint } from '../../ports/scanner.ts'
import { version } from './clamd-commands.ts'

export interface VersionCacheOptions {
  connectTimeoutMs: number
  /** Bound for one VERSION exchange once connected. */
  timeoutMs: number
  maxAgeMs: number
}

interface CachedVersion {
  value: EngineVersion
  at: number
}

export class ClamdVersions {
  readonly #options: VersionCacheOptions
  readonly #cache = new Map<string, CachedVersion>()

  constructor(options: VersionCacheOptions) {
    this.#options = options
  }

  async of(endpoint: ScannerEndpoint, signal: AbortSignal): Promise<EngineVersion> {
    const cached = this.#cache.get(endpoint.url)
    if (cached && Date.now() - cached.at < this.#options.maxAgeMs) return cached.value
    try {
      const { connectTimeoutMs, timeoutMs } = this.#options
      const value = await version(endpoint, { connectTimeoutMs, timeoutMs, signal })
      this.#cache.set(endpoint.url, { value, at: Date.now() })
      return value
    } catch (err) {
      // A stale answer is better than throwing away a verdict clamd already gave.
      if (cached && !signal.aborted) return cached.value
      throw err
    }
  }

  /** The version of the first endpoint that answers, in the order given. */
  async first(endpoints: ScannerEndpoint[], signal: AbortSignal): Promise<EngineVersion> {
    const errors: string[] = []
    for (const endpoint of endpoints) {
      try {
        return await this.of(endpoint, signal)
      } catch (err) {
        if (signal.aborted) throw err
        errors.push(`${endpoint.url}: ${err instanceof Error ? err.message : String(err)}`)
      }
    }
    throw new ScannerError('unavailable', `no clamd answered VERSION (${errors.join('; ')})`)
  }
}
