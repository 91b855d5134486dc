/** The Scanner port over a pool of clamd endpoints: slots, failover, VERSION, readiness and close. */
import type { Readable } from 'node:stream'
import { ScannerError, type EndpointHealth, type EngineVersion, type ScannerEndpoint, type ScanResult, type Scanner } from '../../ports/scanner.ts'
import { ClamdEndpointPool, type ClamdSlot } from './clamd-endpoint-pool.ts'
import { instreamOn } from './clamd-instream.ts'
import { ClamdVersions } from './clamd-versions.ts'

export interface ClamdScannerOptions {
  /** Parsed by configuration; scans go to the healthy one with the fewest in flight. */
  endpoints: ScannerEndpoint[]
  /** Scans at once per endpoint (keep it at or below clamd's MaxThreads); more wait in line. */
  maxPerEndpoint: number
  /** Check every endpoint (PING and EICAR) this often; 0: one check before first use only (connect failures still mark an endpoint down). */
  healthIntervalMs: number
  connectTimeoutMs: number
  /** No progress in either direction while streaming for this long: give up. */
  idleTimeoutMs: number
  /** Bound for one scan; it also bounds clamd's silence while it scans, so be generous. */
  totalTimeoutMs: number
  /** How long a VERSION answer is reused for an endpoint. Default 30 s. */
  versionCacheMs?: number
  /** Largest INSTREAM chunk. Default 64 KiB. */
  chunkSize?: number
}

const DEFAULT_VERSION_CACHE_MS = 30_000
/** Bound for VERSION, which must never wait as long as a scan may. */
const COMMAND_TIMEOUT_CAP_MS = 10_000
/** PONG is clamd's cheapest answer: one slower than this (or than the idle timeout) means trouble. */
const PING_TIMEOUT_CAP_MS = 2_000

export class ClamdScanner implements Scanner {
  readonly #options: ClamdScannerOptions
  readonly #pool: ClamdEndpointPool
  readonly #versions: ClamdVersions
  readonly #inFlight = new Set<AbortController>()
  #closed = false

  constructor(options: ClamdScannerOptions) {
    if (options.endpoints.length === 0) throw new Error('ClamdScanner: at least one clamd endpoint is needed')
    this.#options = options
    this.#pool = new ClamdEndpointPool(options.endpoints, {
      maxPerEndpoint: options.maxPerEndpoint,
      healthIntervalMs: options.healthIntervalMs,
      connectTimeoutMs: options.connectTimeoutMs,
      pingTimeoutMs: Math.min(options.idleTimeoutMs, PING_TIMEOUT_CAP_MS)
    })
    this.#versions = new ClamdVersions({
      connectTimeoutMs: options.connectTimeoutMs,
      timeoutMs: Math.min(options.idleTimeoutMs, COMMAND_TIMEOUT_CAP_MS),
      maxAgeMs: options.versionCacheMs ?? DEFAULT_VERSION_CACHE_MS
    })
  }

  /**
   * Waits for a slot (the body is not touched meanwhile), then streams the body. Probes
   * (VERSION, health checks) take no slot: they are tiny and must not queue behind scans.
   */
  async scan(body: Readable, signal?: AbortSignal): Promise<ScanResult> {
    if (this.#closed) body.destroy()
    return this.#track(signal, async (sig) => {
      let slot: ClamdSlot
      try {
        slot = await this.#pool.takeSlot(sig)
      } catch (err) {
        body.destroy()
        throw err
      }
      const { endpoint } = slot.connection
      // Asked before the scan: if clamd reloads meanwhile, the recorded signature version is
      // the older one, which can only cause an extra rescan, never a skipped one.
      const stopVersion = new AbortController()
      const engine = this.#versions.of(endpoint, AbortSignal.any([sig, stopVersion.signal]))
      engine.catch(() => {})
      try {
        // The total timeout starts with the slot: time in the queue is not clamd being slow.
        const { outcome, bytes } = await instreamOn(slot.connection, body, this.#streamOptions(sig), slot.grantedAt)
        slot.freeWithVerdict() // the VERSION answer awaited below needs no slot
        return { outcome, bytes, endpoint: endpoint.url, engine: await engine }
      } finally {
        slot.free() // does nothing once freed
        stopVersion.abort() // no VERSION request outlives a failed scan
      }
    })
  }

  endpoints(): EndpointHealth[] {
    return this.#pool.snapshot()
  }

  /** The version of the first endpoint that answers, healthy ones first. */
  async version(): Promise<EngineVersion> {
    return this.#track(undefined, (sig) => this.#versions.first(this.#pool.byHealth(), sig))
  }

  readiness(): Promise<{ ok: boolean; detail: string }> {
    return this.#pool.readiness()
  }

  /** Stops health checks, aborts scans running or waiting for a slot, and refuses new ones. */
  async close(): Promise<void> {
    this.#closed = true
    this.#pool.close()
    for (const controller of this.#inFlight) controller.abort(new Error('scanner closed'))
  }

  #streamOptions(signal: AbortSignal) {
    const { connectTimeoutMs, idleTimeoutMs, totalTimeoutMs, chunkSize } = this.#options
    return { connectTimeoutMs, idleTimeoutMs, totalTimeoutMs, chunkSize, signal }
  }

  /** Runs work with a signal that the caller's signal and close() both abort. */
  async #track<T>(signal: AbortSignal | undefined, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    if (this.#closed) throw new ScannerError('aborted', 'scanner is closed')
    const controller = new AbortController()
    const onAbort = () => controller.abort(signal?.reason)
    if (signal?.aborted) onAbort()
    else signal?.addEventListener('abort', onAbort, { once: true })
    this.#inFlight.add(controller)
    try {
      return await work(controller.signal)
    } catch (err) {
      throw toScannerError(err)
    } finally {
      this.#inFlight.delete(controller)
      signal?.removeEventListener('abort', onAbort)
    }
  }
}

function toScannerError(err: unknown): ScannerError {
  if (err instanceof ScannerError) return err
  return new ScannerError('protocol', `unexpected scanner failure: ${describe(err)}`, { cause: err })
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
