import Type, { type Static } from 'typebox'
import type { ScannerEndpoint } from '../ports/scanner.ts'

const Int = (min: number, def: number, description: string, max?: number) =>
  Type.Integer({ minimum: min, default: def, description, ...(max === undefined ? {} : { maximum: max }) })
const List = (description: string, def: string[] = []) => Type.Array(Type.String({ minLength: 1 }), { default: def, description })

/**
 * Every setting, with its default and meaning. Files in config/ and environment variables
 * use these same names; the README's configuration table is checked against this list.
 */
export const configSchema = Type.Object(
  {
    GW_HOST: Type.String({ minLength: 1, default: '127.0.0.1', description: 'Address the HTTP server listens on.' }),
    GW_PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 8080, description: 'HTTP port (0 picks a free one).' }),
    GW_ROLE: Type.Union([Type.Literal('all'), Type.Literal('api'), Type.Literal('worker')], {
      default: 'all',
      description: 'What this process does: `api` takes uploads and answers statuses, `worker` scans and promotes (and serves only health and metrics), `all` both.'
    }),
    GW_LOG_LEVEL: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)), {
      default: 'info',
      description: 'pino log level.'
    }),
    GW_STORE: Type.Union([Type.Literal('fs'), Type.Literal('s3')], {
      default: 'fs',
      description: 'Object store: `fs` (local directories, for a first run) or `s3` (any S3-compatible endpoint).'
    }),
    GW_FS_ROOT: Type.String({ minLength: 1, default: './data/objects', description: 'With `fs`: directory holding `quarantine/` and `production/`.' }),
    GW_S3_ENDPOINT: Type.String({ default: '', description: 'With `s3`: endpoint URL of an S3-compatible server; empty means AWS S3.' }),
    GW_S3_REGION: Type.String({ minLength: 1, default: 'us-east-1', description: 'With `s3`: region.' }),
    GW_S3_FORCE_PATH_STYLE: Type.Boolean({ default: false, description: 'With `s3`: path-style addressing (MinIO, moto and most S3-compatible servers need it).' }),
    GW_S3_PART_SIZE_BYTES: Int(5 * 1024 * 1024, 8 * 1024 * 1024, 'With `s3`: multipart part size, and the size of each buffer of the upload memory (GW_UPLOAD_MEMORY_BYTES). A file no larger is stored with one PutObject.'),
    GW_S3_QUEUE_SIZE: Int(1, 4, 'With `s3`: parts uploaded in parallel per upload (each holds a part buffer, and one more fills meanwhile).'),
    GW_QUARANTINE_BUCKET: Type.String({ default: 'quarantine', description: 'Bucket for unscanned and rejected objects.' }),
    GW_PRODUCTION_BUCKET: Type.String({ default: 'production', description: 'Bucket that receives clean objects only.' }),
    GW_KEY_PREFIX: Type.String({ default: '', pattern: '^$|^[A-Za-z0-9][A-Za-z0-9!_.*()-]*(/[A-Za-z0-9][A-Za-z0-9!_.*()-]*)*/?$', description: 'Prefix of every object key (keys are `<prefix><upload id>`).' }),
    GW_DATABASE_URL: Type.String({
      pattern: '^(sqlite:.+|postgres(ql)?://.+)$',
      default: 'sqlite:./data/gateway.db',
      description: 'State store: `sqlite:<path>` (one process) or `postgres://user:password@host:port/database` (several replicas).'
    }),
    GW_DATABASE_SCHEMA: Type.String({ pattern: '^[a-z_][a-z0-9_]*$', default: 'gateway', description: 'With PostgreSQL: schema holding the tables (created if missing).' }),
    GW_DATABASE_POOL_SIZE: Int(1, 10, 'With PostgreSQL: connections per process.'),
    GW_SQLITE_SYNCHRONOUS: Type.Union([Type.Literal('full'), Type.Literal('normal')], {
      default: 'full',
      description: 'With SQLite: `full` flushes each commit to disk (an fsync off the event loop) before the upload is answered, so an accepted upload survives a power loss; `normal` flushes at checkpoints only: a process crash loses nothing, a power loss or OS crash may lose the last accepted uploads, whose objects the orphan sweeper then removes. See Limits.'
    }),
    GW_CLAMD: List('clamd endpoints, `tcp://host:port` or `unix:///path`, comma-separated; scans are spread over them.', ['tcp://127.0.0.1:3310']),
    GW_CLAMD_MAX_PER_ENDPOINT: Int(1, 8, "Scans sent at once to one clamd endpoint (keep it at or below clamd's MaxThreads)."),
    GW_CLAMD_HEALTH_INTERVAL_MS: Int(0, 10_000, 'How often each clamd endpoint is checked (PING, then an EICAR scan that must be detected); a failing one gets no scans until it answers again, and none gets scans before it passed a check. /readyz reports these checks. 0: no periodic checks, one check per endpoint before its first use.'),
    GW_CLAMD_CONNECT_TIMEOUT_MS: Int(1, 5_000, 'Give up connecting to clamd after this long.'),
    GW_CLAMD_IDLE_TIMEOUT_MS: Int(1, 60_000, 'Give up when clamd (or the object store feeding it) makes no progress for this long.'),
    GW_CLAMD_TOTAL_TIMEOUT_MS: Int(1, 30 * 60_000, 'Upper bound of one scan, however much progress it makes.'),
    // clamd silently stops scanning past 2 GiB whatever it is configured with, and answers OK.
    GW_SCANNER_MAX_BYTES: Int(1, 100 * 1024 * 1024, "Largest file sent to clamd; set it to clamd's StreamMaxLength. Larger files are unscannable. At most 2000 MiB: clamd does not scan past 2 GiB and still answers OK.", 2000 * 1024 * 1024),
    GW_MAX_UPLOAD_BYTES: Int(1, 100 * 1024 * 1024, 'Largest upload accepted (413 above it).'),
    GW_MAX_CONCURRENT_UPLOADS: Int(1, 64, 'Uploads taken at once by this process; past it, 503 GW_BUSY with Retry-After.'),
    GW_UPLOAD_MEMORY_BYTES: Int(1024 * 1024, 128 * 1024 * 1024, 'With `s3`: the part buffers all uploads of this process share (GW_UPLOAD_MEMORY_BYTES ÷ GW_S3_PART_SIZE_BYTES buffers, at least one), allocated once and reused. An upload that finds none free waits for one, not reading its request meanwhile (TCP backpressure); it is not refused. With `fs` uploads are written as they arrive, with no part buffers. See Limits.'),
    GW_UPLOAD_IDLE_TIMEOUT_MS: Int(1, 60_000, 'An upload whose client sends nothing for this long is answered 408 GW_TOO_SLOW and closed; time the gateway spends not reading because its store is slow does not count. Other requests: a connection idle this long is closed.'),
    GW_SCAN_CONCURRENCY: Int(0, 4, 'Scans run at once by this process (0: this process does not scan): jobs reading an object and waiting for its verdict. Workers claim only as many as they can run.'),
    GW_PROMOTE_CONCURRENCY: Int(1, 8, 'Jobs past their verdict at once in this process: promotions, tags and state writes, run while the scan slots (GW_SCAN_CONCURRENCY) go on to the next scans. A job that finds them all taken keeps its scan slot until one frees.'),
    GW_SCAN_LEASE_MS: Int(1_000, 60_000, 'Lease of a claimed scan; renewed while it runs, claimed again by another worker once expired.'),
    GW_SCAN_MAX_ATTEMPTS: Int(1, 8, 'Tries of a scan, or of a promotion, before the upload is marked failed. Tries that could not reach clamd do not count.'),
    GW_RETRY_BASE_MS: Int(1, 2_000, 'First retry delay after a transient error; doubles on each try.'),
    GW_RETRY_MAX_MS: Int(1, 5 * 60_000, 'Longest retry delay.'),
    GW_POLL_INTERVAL_MS: Int(10, 1_000, 'How often an idle worker looks for due scans. A worker busy with rescans looks this often for uploads that became due by time (a retry\'s backoff, an expired lease); a new upload wakes it at once.'),
    GW_RESCAN_INTERVAL: Type.String({
      pattern: '^[1-9][0-9]*(ms|s|m|h|d)$',
      default: '30d',
      description: 'Stored clean objects are scanned again this long after their last scan (`30d`, `12h`, `90s`, `500ms`), less a random part (GW_RESCAN_JITTER).'
    }),
    GW_RESCAN_JITTER: Type.Number({ minimum: 0, maximum: 1, default: 0.2, description: 'Part of GW_RESCAN_INTERVAL taken off at random per object, so a busy upload day does not make a busy rescan day.' }),
    GW_RESCAN_SHARE: Type.Number({ minimum: 0, maximum: 1, default: 0.5, description: "Share of a worker's GW_SCAN_CONCURRENCY that rescans (and first scans of adopted objects) may use while uploads are coming in (at least one slot when above 0); a worker that claimed no upload for 10 s lets them use every free slot. New uploads are always claimed first. 0: this worker does not rescan." }),
    GW_ADOPT_PAGE_SIZE: Int(1, 1000, 'Objects listed per ListObjectsV2 page by an adoption; each page is registered and its continuation token saved in one transaction.', 1000),
    GW_REQUARANTINE_MODE: Type.Union([Type.Literal('move'), Type.Literal('tag')], {
      default: 'move',
      description: 'When a rescan finds a stored object infected or unscannable: `move` it back to quarantine, or `tag` it `av-status=infected` in place for a bucket policy that denies reads.'
    }),
    GW_WEBHOOK_URL: Type.String({ default: '', description: 'Events (`upload.clean`, `upload.infected`, …) are POSTed here, signed; empty: no webhooks.' }),
    GW_WEBHOOK_SECRET: Type.String({ default: '', description: 'HMAC-SHA256 key for the `webhook-signature` header (16 characters or more; required with GW_WEBHOOK_URL).' }),
    GW_WEBHOOK_TIMEOUT_MS: Int(1, 10_000, 'A webhook delivery that has not answered within this long is retried later.'),
    GW_UPLOAD_KEYS: List('Bearer tokens allowed to upload and read statuses (16 characters or more each). Empty: anonymous, allowed only on a loopback address.'),
    GW_ADMIN_KEYS: List('Bearer tokens for operators: everything upload keys may do, and the admin API (rescans, releases, audit). Audit records name a key by `admin-` and the first 12 hex digits of its SHA-256.'),
    GW_CORS_ORIGINS: List('Origins allowed by CORS, comma-separated; empty disables CORS.'),
    GW_SHUTDOWN_GRACE_MS: Int(0, 30_000, 'On SIGTERM/SIGINT, how long in-flight uploads and scans may take to finish; scans still running then are stopped and their leases given back, so another worker takes them at once.'),
    GW_UPLOAD_MIN_RATE_BYTES: Int(0, 1024, 'Least average rate, in bytes per second over GW_UPLOAD_RATE_WINDOW_MS, at which an upload must arrive; a slower one is answered 408 GW_TOO_SLOW and closed. Time the gateway spends not reading because its store is slow does not count. 0: no minimum.'),
    GW_UPLOAD_RATE_WINDOW_MS: Int(100, 20_000, 'Sliding window over which GW_UPLOAD_MIN_RATE_BYTES is measured (only time the gateway is reading the client counts).'),
    GW_HEADERS_TIMEOUT_MS: Int(100, 20_000, 'A request must have sent all its headers this long after it started; otherwise it is answered 408 GW_TOO_SLOW and its connection closed.'),
    GW_MAX_CONNECTIONS: Int(1, 1024, 'Connections this process keeps open at once; requests on connections past it are answered 503 GW_BUSY with Retry-After and closed (`/healthz` excepted). Past twice as many, new connections are closed at once.'),
    GW_FAILED_RETRY_AFTER: Type.String({
      pattern: '^[1-9][0-9]*(ms|s|m|h|d)$',
      default: '1h',
      description: 'An upload that failed because of the infrastructure (store or scanner errors and timeouts, not bytes that do not match their upload) goes back to pending this long after (`1h`, `30m`, `90s`), for up to GW_FAILED_RETRY_ROUNDS rounds.'
    }),
    GW_FAILED_RETRY_ROUNDS: Int(0, 3, 'Automatic rounds (each with GW_SCAN_MAX_ATTEMPTS tries) a failed upload gets after infrastructure failures before it waits for an operator; an operator rescan starts the count again. 0: none.'),
    GW_OPS_PORT: Int(0, 0, 'Port of a second listener (on GW_HOST) for `/metrics` and `/readyz` (and `/healthz`), so scrapers and load balancers reach them on an internal port; the main port then serves `/healthz` only of the three. 0: no second listener, all three on the main port.', 65535),
    GW_METRICS_QUEUE_INTERVAL_MS: Int(0, 10_000, 'How often `/metrics` reads the queue figures (`gateway_queue_depth`, the oldest upload age, `gateway_state_store_up`) from the state store; scrapes in between get the last reading. 0: every scrape reads (concurrent scrapes still share one query).'),
    GW_HISTORY_RETENTION: Type.String({
      pattern: '^[1-9][0-9]*(ms|s|m|h|d)$',
      default: '400d',
      description: 'Delivered webhook events, scan history and finished or cancelled rescans older than this are deleted, in batches, by worker processes. Undelivered events and what a running rescan needs are kept.'
    }),
    GW_AUDIT_RETENTION: Type.String({
      pattern: '^$|^[1-9][0-9]*(ms|s|m|h|d)$',
      default: '',
      description: 'Audit rows (admin actions) older than this are deleted like history; empty: kept for ever.'
    }),
    GW_ORPHAN_AFTER: Type.String({
      pattern: '^[1-9][0-9]*(ms|s|m|h|d)$',
      default: '1h',
      description: 'Objects and open multipart uploads in quarantine that no committed record names are removed by worker processes once this old (`1h`, `90s`, …). Keep it above the longest upload: an upload still being received after this long is refused.'
    }),
    GW_ORPHAN_SWEEP_INTERVAL_MS: Int(100, 60_000, 'How often a worker process looks for orphans to remove, and for uploads whose cleanup failed to retry.'),
    GW_TOKEN_SECRETS: List('Upload token keys, `kid:secret` pairs comma-separated (each secret 32 bytes or more). Tokens are HS256 JWTs naming their `kid`; several pairs allow rotation (sign with the new one, keep the old until its tokens expired). Empty: tokens are not accepted.'),
    GW_TOKEN_AUDIENCE: Type.String({ minLength: 1, default: 'upload-gateway', description: 'The `aud` claim every upload token must carry.' }),
    GW_TOKEN_READ_TTL: Type.String({
      pattern: '^[1-9][0-9]*(ms|s|m|h|d)$',
      default: '24h',
      description: 'How long after an upload was created the token that created it may still read its status, even once the token has expired.'
    }),
    GW_TUS_EXPIRY: Type.String({
      pattern: '^[1-9][0-9]*(ms|s|m|h|d)$',
      default: '24h',
      description: 'A tus upload not completed this long after it was created expires: its parts and records are removed.'
    }),
    GW_ALLOWED_TYPES: List('MIME types an upload may have, judged from its content (`image/png`, `application/pdf`, `image/*`, …); empty: any. Text (`text/plain`, `text/csv`) counts only for valid UTF-8 without NUL bytes; `image/svg+xml`, `text/html` and XML pass only when named exactly, never through a wildcard.'),
    GW_RATE_LIMIT_TOKENS_PER_MINUTE: Int(0, 60, 'Upload tokens one key (or address) may mint per minute (`POST /v1/upload-tokens`, `POST /demo/token`); past it, 429 GW_RATE_LIMITED with Retry-After. 0: no limit. Counted per process.'),
    GW_RATE_LIMIT_UPLOADS_PER_MINUTE: Int(0, 600, 'Uploads (multipart, or tus creations) one token subject, key or address may start per minute; past it, 429 GW_RATE_LIMITED. 0: no limit. Counted per process.'),
    GW_RATE_LIMIT_STATUS_PER_MINUTE: Int(0, 6000, 'Status reads one token subject, key or address may make per minute; past it, 429 GW_RATE_LIMITED. 0: no limit. Counted per process.'),
    GW_DEMO: Type.Boolean({ default: false, description: 'Serves the demo page at `/demo` (Uppy, tus uploads, live status) and `POST /demo/token`, which mints upload tokens without a key: only allowed with GW_HOST on a loopback address, and needs GW_TOKEN_SECRETS.' }),
    GW_STORE_TIMEOUT_MS: Int(100, 120_000, 'An upload whose quarantine store makes no progress for this long (takes no bytes and stores no part: S3 hangs) ends with 503 GW_STORE_UNAVAILABLE and Retry-After. Under many concurrent large uploads a slow S3 can take tens of seconds per part: keep it well above that.')
  },
  { additionalProperties: false }
)

/** The settings as files and the environment give them. */
export type Settings = Static<typeof configSchema>
export type ConfigKey = keyof Settings
/** What start-up hands over: the settings, with each clamd endpoint parsed once. */
export type Config = Omit<Settings, 'GW_CLAMD'> & { GW_CLAMD: ScannerEndpoint[] }
