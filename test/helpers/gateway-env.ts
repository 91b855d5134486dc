import { pgUrl } from './postgres.ts'

export const MiB = 1024 * 1024
export const QUARANTINE = 'quarantine'
export const PRODUCTION = 'production'

/**
 * Settings for a gateway on S3 (moto) and PostgreSQL, shared by the multi-process tests.
 * AWS_* are read by the SDK's credential chain (child processes get them through this env;
 * in-process gateways read process.env, so set them there too). Timings are short so that
 * retries and lease expiries happen within a test's budget.
 */
export function s3PgEnv(o: { s3Endpoint: string; schema: string; clamd: string; databaseUrl?: string }): Record<string, string> {
  return {
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    GW_STORE: 's3',
    GW_S3_ENDPOINT: o.s3Endpoint,
    GW_S3_FORCE_PATH_STYLE: 'true',
    // The S3 minimum: files above it exercise the multipart path.
    GW_S3_PART_SIZE_BYTES: String(5 * MiB),
    GW_QUARANTINE_BUCKET: QUARANTINE,
    GW_PRODUCTION_BUCKET: PRODUCTION,
    GW_DATABASE_URL: o.databaseUrl ?? pgUrl,
    GW_DATABASE_SCHEMA: o.schema,
    GW_DATABASE_POOL_SIZE: '4',
    GW_CLAMD: o.clamd,
    GW_POLL_INTERVAL_MS: '100',
    GW_RETRY_BASE_MS: '200',
    GW_RETRY_MAX_MS: '1000'
  }
}
