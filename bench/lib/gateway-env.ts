import { join } from 'node:path'
import { GiB, MiB } from './content.ts'
import type { Context } from './types.ts'

/**
 * The upload scenarios' S3 settings, on both sides (the direct baseline uses the same lib-storage
 * part and queue sizes). The smallest the gateway allows: 5 MiB parts (the S3 minimum), one part
 * in flight per upload.
 */
export const PART_SIZE = 5 * MiB
export const QUEUE_SIZE = 1
export const MAX_CONCURRENCY = 64

/** A gateway on moto and SQLite that takes uploads and does not scan (scenarios 1, 2, 4, 5). */
export function apiGatewayEnv(ctx: Context, name: string): Record<string, string> {
  return {
    ...s3Env(ctx),
    GW_ROLE: 'api',
    GW_DATABASE_URL: `sqlite:${join(ctx.dir, `${name}.db`)}`,
    GW_MAX_UPLOAD_BYTES: String(GiB + 64 * MiB),
    // GW_UPLOAD_MEMORY_BYTES is left at its default: the part buffers all uploads share.
    GW_MAX_CONCURRENT_UPLOADS: String(MAX_CONCURRENCY)
  }
}

export function s3Env(ctx: Context): Record<string, string> {
  return {
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    GW_STORE: 's3',
    GW_S3_ENDPOINT: ctx.moto.endpoint,
    GW_S3_FORCE_PATH_STYLE: 'true',
    GW_S3_PART_SIZE_BYTES: String(PART_SIZE),
    GW_S3_QUEUE_SIZE: String(QUEUE_SIZE),
    GW_QUARANTINE_BUCKET: ctx.buckets.quarantine,
    GW_PRODUCTION_BUCKET: ctx.buckets.production,
    GW_CLAMD: ctx.clamdUrl
  }
}
