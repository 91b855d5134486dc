import type { Readable } from 'node:stream'

export interface EngineVersion {
  /** For example "ClamAV 1.4.6". */
  engine: string
  /** The daily signature database version, null when clamd does not report one. */
  signatureVersion: number | null
  /** The date of that database as clamd prints it, null when not reported. */
  signatureDate: string | null
}

/** What the scanner concluded about one body: its reply, before it is stored with the upload (Verdict). */
export type ScanVerdict =
  | { result: 'clean' }
  | { result: 'infected'; signature: string }
  /** The scanner did not fully scan the content: limits exceeded, encrypted archive. Never clean, never infected. */
  | { result: 'unscannable'; reason: string }

export interface ScanResult {
  outcome: ScanVerdict
  engine: EngineVersion
  /** Bytes sent to the scanner. */
  bytes: number
  /** Which scanner endpoint answered, for logs and audit. */
  endpoint: string
}

/** Where a scanner listens, as configuration parsed it: `tcp://host:port` or `unix:///path`. */
export type ScannerEndpoint =
  | { kind: 'tcp'; url: string; host: string; port: number }
  | { kind: 'unix'; url: string; path: string }

/** One scanner endpoint as the gateway last saw it; for /metrics and /readyz. */
export interface EndpointHealth {
  endpoint: string
  /** Last evidence: a health check, a connect attempt or a finished scan. False until the first check passes. */
  healthy: boolean
  /** Its latest EICAR check detected the test file; only such endpoints get scans. */
  verified: boolean
  /** Scans holding one of its slots now. */
  inFlight: number
  /** Most scans it is given at once. */
  limit: number
  /** When that evidence came (ms since the epoch), null before any. */
  checkedAt: number | null
  /** Why it is unhealthy; null when healthy. */
  detail: string | null
}

export interface Scanner {
  /**
   * Streams body to the scanner and maps its reply to a verdict. Throws ScannerError for
   * every failure that says nothing about the content (unreachable, timeouts, garbage).
   */
  scan(body: Readable, signal?: AbortSignal): Promise<ScanResult>
  version(): Promise<EngineVersion>
  /**
   * Whether scans can run, from the latest health checks (each scans the EICAR test string, which
   * catches a scanner with no signatures): ok when an endpoint that gets scans is healthy. Never
   * probes more often than the health checks do, so callers may ask as often as they like.
   */
  readiness(): Promise<{ ok: boolean; detail: string }>
  /** A cheap synchronous snapshot: ready while at least one endpoint is healthy. */
  endpoints(): EndpointHealth[]
  close(): Promise<void>
}

export type ScannerErrorCode =
  | 'unavailable'
  | 'connect_timeout'
  | 'idle_timeout'
  | 'total_timeout'
  | 'protocol'
  | 'engine_error'
  | 'source_error'
  | 'aborted'

/** A transient scanner failure: retried with backoff, never read as a verdict. */
export class ScannerError extends Error {
  override name = 'ScannerError'
  readonly code: ScannerErrorCode
  constructor(code: ScannerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }
}
