import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { BytesOutcome, Metrics, PromotionOutcome, ScanOutcome, UploadOutcome } from '../../ports/metrics.ts'
import type { Scanner } from '../../ports/scanner.ts'
import type { JobQueue } from '../../ports/job-queue.ts'
import type { UploadChanges } from '../../ports/upload-changes.ts'

/** What the gauges read at scrape time. */
export interface MetricSources {
  jobs: JobQueue
  scanner: Scanner
  admission: { uploads: number; bufferedBytes: number }
  changes: Pick<UploadChanges, 'listenerCount'>
}

/** A scrape must answer quickly even when clamd or the database does not. */
const sourceTimeoutMs = 1_000

/** Metrics in the Prometheus text format (prom-client), on a registry of their own. */
export class PrometheusMetrics implements Metrics {
  readonly registry = new Registry()
  readonly #uploads: Counter<'outcome'>
  readonly #bytes: Counter<'outcome'>
  readonly #scans: Counter<'outcome'>
  readonly #scanSeconds: Histogram<'outcome'>
  readonly #promotions: Counter<'outcome'>
  #scrapes = 0

  /** queueIntervalMs: the queue figures are read from the state store at most this often, however many scrapes come. */
  constructor(sources: MetricSources, options: { queueIntervalMs: number }) {
    const registers = [this.registry]
    collectDefaultMetrics({ register: this.registry })
    this.#uploads = new Counter({ name: 'gateway_uploads_total', help: 'Upload requests by how they ended.', labelNames: ['outcome'], registers })
    this.#bytes = new Counter({
      name: 'gateway_upload_bytes_total',
      help: 'Bytes streamed into quarantine: stored with an accepted upload, or discarded.',
      labelNames: ['outcome'],
      registers
    })
    this.#scans = new Counter({ name: 'gateway_scans_total', help: 'Scans by verdict (error: no verdict, retried).', labelNames: ['outcome'], registers })
    this.#scanSeconds = new Histogram({
      name: 'gateway_scan_duration_seconds',
      help: 'Time from opening the quarantined object to the verdict.',
      labelNames: ['outcome'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160],
      registers
    })
    this.#promotions = new Counter({ name: 'gateway_promotions_total', help: 'Promotions to production by how they ended.', labelNames: ['outcome'], registers })

    const { jobs, scanner, admission, changes } = sources
    gauge('gateway_uploads_in_flight', 'Uploads being received by this process.', async (g) => g.set(admission.uploads))
    gauge('gateway_upload_memory_reserved_bytes', 'Part buffers uploads in flight hold (bounded by GW_UPLOAD_MEMORY_BYTES).', async (g) =>
      g.set(admission.bufferedBytes)
    )
    gauge('gateway_status_waiters', 'Status requests of this process waiting for a change (GET /v1/uploads/:id?wait=N).', async (g) => g.set(changes.listenerCount()))
    // Each gauge reads its source in its own collect(); one read per scrape is shared between them.
    const scrape = () => this.#scrapes
    // The queue query counts every unfinished upload: with a backlog of millions, one per scrape
    // (and per scraper, per replica) would load the database for a figure that moves slowly.
    const stats = perScrape(scrape, reusedFor(options.queueIntervalMs, () => jobs.queueStats()))
    const version = perScrape(scrape, () => scanner.version())
    gauge('gateway_state_store_up', '1 when the state store answered the latest queue query (GW_METRICS_QUEUE_INTERVAL_MS).', async (g) => {
      g.set((await stats()) ? 1 : 0)
    })
    gauge('gateway_queue_depth', 'Uploads waiting for a verdict or a promotion, across all replicas.', async (g) => {
      const s = await stats()
      if (s) g.set(s.depth)
    })
    gauge('gateway_oldest_pending_upload_age_seconds', 'Age of the oldest upload without a final status (0: none).', async (g) => {
      const s = await stats()
      if (s) g.set(s.oldestCreatedAt === null ? 0 : Math.max(0, (Date.now() - s.oldestCreatedAt) / 1000))
    })
    gauge('gateway_clamd_endpoint_up', '1 when the clamd endpoint passes its health check.', async (g) => {
      for (const e of scanner.endpoints()) g.set({ endpoint: e.endpoint }, e.healthy ? 1 : 0)
    }, ['endpoint'])
    gauge('gateway_clamd_endpoint_in_flight', 'Scans running on the clamd endpoint from this process.', async (g) => {
      for (const e of scanner.endpoints()) g.set({ endpoint: e.endpoint }, e.inFlight)
    }, ['endpoint'])
    gauge('gateway_clamd_signature_version', 'Daily signature database version reported by clamd VERSION.', async (g) => {
      const v = await version()
      if (v?.signatureVersion != null) g.set(v.signatureVersion)
    })
    gauge('gateway_clamd_signature_age_seconds', 'Age of the signature database, from the date clamd VERSION reports.', async (g) => {
      const v = await version()
      const date = v?.signatureDate ? Date.parse(v.signatureDate) : Number.NaN
      if (Number.isFinite(date)) g.set(Math.max(0, (Date.now() - date) / 1000))
    })

    function gauge(name: string, help: string, read: (g: Gauge<string>) => Promise<void>, labelNames: string[] = []): void {
      new Gauge({
        name,
        help,
        labelNames,
        registers,
        async collect() {
          // A value that cannot be read now is NaN (unknown; prom-client writes it Nan), never a stale or a zero value.
          this.reset()
          if (labelNames.length === 0) this.set(Number.NaN)
          await read(this)
        }
      })
    }
  }

  get contentType(): string {
    return this.registry.contentType
  }

  render(): Promise<string> {
    this.#scrapes++
    return this.registry.metrics()
  }

  uploadEnded(outcome: UploadOutcome): void {
    this.#uploads.inc({ outcome })
  }

  uploadBytes(outcome: BytesOutcome, bytes: number): void {
    if (bytes > 0) this.#bytes.inc({ outcome }, bytes)
  }

  scanEnded(outcome: ScanOutcome, seconds: number): void {
    this.#scans.inc({ outcome })
    this.#scanSeconds.observe({ outcome }, seconds)
  }

  promotionEnded(outcome: PromotionOutcome): void {
    this.#promotions.inc({ outcome })
  }
}

/** One read shared by the gauges of a scrape, bounded in time; null when the source failed or was too slow. */
function perScrape<T>(scrape: () => number, read: () => Promise<T>): () => Promise<T | null> {
  let last: { scrape: number; value: Promise<T | null> } | null = null
  return () => {
    if (last?.scrape === scrape()) return last.value
    const value = bounded(read().catch(() => null))
    last = { scrape: scrape(), value }
    return value
  }
}

/**
 * One read at a time, its result (a failure included, as null) reused until maxAgeMs after it
 * ended. A scrape that gives up waiting (perScrape) leaves the read going: the next scrapes get its result.
 */
function reusedFor<T>(maxAgeMs: number, read: () => Promise<T>): () => Promise<T | null> {
  let last: { value: Promise<T | null>; endedAt: number | null } | null = null
  return () => {
    if (!last || (last.endedAt !== null && Date.now() - last.endedAt >= maxAgeMs)) {
      const entry: { value: Promise<T | null>; endedAt: number | null } = { value: read().catch(() => null), endedAt: null }
      void entry.value.then(() => {
        entry.endedAt = Date.now()
      })
      last = entry
    }
    return last.value
  }
}

function bounded<T>(value: Promise<T | null>): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), sourceTimeoutMs)
  })
  return Promise.race([value, timeout]).finally(() => clearTimeout(timer))
}
