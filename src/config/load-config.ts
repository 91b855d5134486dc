import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { resolve } from 'node:path'
import Value from 'typebox/value'
import { isMediaRange } from '../domain/media-types.ts'
import { parseClamdEndpoint } from './clamd-endpoints.ts'
import { configSchema, type Config, type ConfigKey, type Settings } from './config-schema.ts'

/** Start-up refuses a bad configuration with this error, which names the key. */
export class ConfigError extends Error {
  override name = 'ConfigError'
}

interface Sources {
  env: NodeJS.ProcessEnv
  /** Directory holding default.json (and the file named by GW_CONFIG_FILE, if relative). */
  configDir: string
}

const keys = Object.keys(configSchema.properties) as ConfigKey[]
const loopbackNames = new Set(['localhost', '127.0.0.1', '::1'])

/**
 * The one place that reads configuration: config/default.json, then the file named by
 * GW_CONFIG_FILE, then GW_* environment variables, each overriding the one before.
 */
export function loadConfig(sources: Sources = { env: process.env, configDir: resolve('config') }): Config {
  const merged: Record<string, unknown> = {}
  const origin: Record<string, string> = {}
  const files = [resolve(sources.configDir, 'default.json')]
  if (sources.env.GW_CONFIG_FILE) files.push(resolve(sources.configDir, sources.env.GW_CONFIG_FILE))
  for (const file of files) {
    for (const [key, value] of Object.entries(readJson(file))) {
      merged[key] = value
      origin[key] = file
    }
  }
  for (const [key, raw] of Object.entries(sources.env)) {
    if (!key.startsWith('GW_') || key === 'GW_CONFIG_FILE' || raw === undefined) continue
    if (!keys.includes(key as ConfigKey)) throw new ConfigError(`${key}: unknown setting (environment); known settings are listed in the README`)
    merged[key] = fromEnv(key as ConfigKey, raw)
    origin[key] = 'environment'
  }
  for (const key of Object.keys(merged)) {
    if (!keys.includes(key as ConfigKey)) throw new ConfigError(`${key}: unknown setting (${origin[key]})`)
  }
  const config = Value.Default(configSchema, merged) as Record<string, unknown>
  for (const error of Value.Errors(configSchema, config)) {
    const key = error.instancePath.split('/')[1] ?? ''
    const from = origin[key] ?? 'default'
    const choices = (configSchema.properties[key as ConfigKey] as { anyOf?: { const: string }[] } | undefined)?.anyOf
    const message = choices ? `must be one of ${choices.map((c) => c.const).join(', ')}` : error.message
    throw new ConfigError(`${key}: ${message} (got ${JSON.stringify(config[key])} from ${from})`)
  }
  return checkCombinations(config as Settings)
}

function readJson(file: string): Record<string, unknown> {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`)
  }
  try {
    const value: unknown = JSON.parse(text)
    if (value && typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>
  } catch (err) {
    throw new ConfigError(`config file ${file} is not valid JSON: ${(err as Error).message}`)
  }
  throw new ConfigError(`config file ${file} must hold a JSON object`)
}

/** Environment values are strings: read them as the schema's type says. */
function fromEnv(key: ConfigKey, raw: string): unknown {
  const schema = configSchema.properties[key] as { type?: string }
  const text = raw.trim()
  switch (schema.type) {
    case 'integer':
      if (!/^-?\d+$/.test(text)) throw new ConfigError(`${key}: must be a whole number (got ${JSON.stringify(raw)} from environment)`)
      return Number(text)
    case 'number':
      if (!/^-?\d+(\.\d+)?$/.test(text)) throw new ConfigError(`${key}: must be a number (got ${JSON.stringify(raw)} from environment)`)
      return Number(text)
    case 'boolean':
      if (/^(true|1|yes)$/i.test(text)) return true
      if (/^(false|0|no)$/i.test(text)) return false
      throw new ConfigError(`${key}: must be true or false (got ${JSON.stringify(raw)} from environment)`)
    case 'array':
      return text === '' ? [] : text.split(',').map((s) => s.trim())
    default:
      return text
  }
}

function checkCombinations(config: Settings): Config {
  if (config.GW_STORE === 's3') {
    if (!config.GW_QUARANTINE_BUCKET) throw new ConfigError('GW_QUARANTINE_BUCKET: required when GW_STORE=s3')
    if (!config.GW_PRODUCTION_BUCKET) throw new ConfigError('GW_PRODUCTION_BUCKET: required when GW_STORE=s3')
    if (config.GW_QUARANTINE_BUCKET === config.GW_PRODUCTION_BUCKET) {
      throw new ConfigError('GW_PRODUCTION_BUCKET: must differ from GW_QUARANTINE_BUCKET, or unscanned files would be served')
    }
    if (config.GW_S3_ENDPOINT && !URL.canParse(config.GW_S3_ENDPOINT)) {
      throw new ConfigError(`GW_S3_ENDPOINT: not a URL (got ${JSON.stringify(config.GW_S3_ENDPOINT)})`)
    }
  }
  const clamd = config.GW_CLAMD.map((url) => {
    try {
      return parseClamdEndpoint(url)
    } catch (err) {
      throw new ConfigError(`GW_CLAMD: ${(err as Error).message}`)
    }
  })
  const notAType = config.GW_ALLOWED_TYPES.find((entry) => !isMediaRange(entry))
  if (notAType !== undefined) throw new ConfigError(`GW_ALLOWED_TYPES: ${JSON.stringify(notAType)} is not a MIME type: write type/subtype, type/* or */*`)
  if (config.GW_CLAMD.length === 0 && config.GW_SCAN_CONCURRENCY > 0) {
    throw new ConfigError('GW_CLAMD: at least one clamd endpoint is needed when GW_SCAN_CONCURRENCY > 0')
  }
  if (config.GW_ROLE === 'worker' && config.GW_SCAN_CONCURRENCY === 0) {
    throw new ConfigError('GW_SCAN_CONCURRENCY: must be above 0 when GW_ROLE=worker, or this process does nothing')
  }
  if (!config.GW_DATABASE_URL.startsWith('sqlite:') && !URL.canParse(config.GW_DATABASE_URL)) {
    throw new ConfigError('GW_DATABASE_URL: not a valid postgres:// URL')
  }
  if (config.GW_WEBHOOK_URL) {
    if (!/^https?:\/\/./.test(config.GW_WEBHOOK_URL) || !URL.canParse(config.GW_WEBHOOK_URL)) {
      throw new ConfigError(`GW_WEBHOOK_URL: not an http(s) URL (got ${JSON.stringify(config.GW_WEBHOOK_URL)})`)
    }
    if (config.GW_WEBHOOK_SECRET.length < 16) throw new ConfigError('GW_WEBHOOK_SECRET: required (16 characters or more) when GW_WEBHOOK_URL is set')
  }
  for (const key of ['GW_UPLOAD_KEYS', 'GW_ADMIN_KEYS'] as const) {
    if (config[key].some((k) => k.length < 16)) throw new ConfigError(`${key}: every key must be 16 characters or more`)
  }
  if (config.GW_UPLOAD_KEYS.length === 0 && !isLoopback(config.GW_HOST)) {
    throw new ConfigError(`GW_UPLOAD_KEYS: required when listening on ${config.GW_HOST}; anonymous uploads are allowed only on a loopback address`)
  }
  tokenSecrets(config.GW_TOKEN_SECRETS)
  if (config.GW_RETRY_MAX_MS < config.GW_RETRY_BASE_MS) throw new ConfigError('GW_RETRY_MAX_MS: must be at least GW_RETRY_BASE_MS')
  if (config.GW_OPS_PORT !== 0 && config.GW_OPS_PORT === config.GW_PORT) throw new ConfigError('GW_OPS_PORT: must differ from GW_PORT')
  // The demo mints upload tokens for whoever asks (POST /demo/token): never beyond this machine.
  if (config.GW_DEMO && !isLoopback(config.GW_HOST)) {
    throw new ConfigError(`GW_DEMO: allowed only with GW_HOST on a loopback address (got ${JSON.stringify(config.GW_HOST)}): its page mints upload tokens without a key`)
  }
  if (config.GW_DEMO && config.GW_TOKEN_SECRETS.length === 0) {
    throw new ConfigError('GW_DEMO: needs GW_TOKEN_SECRETS (the demo page uploads with upload tokens it mints)')
  }
  return { ...config, GW_CLAMD: clamd }
}

/**
 * GW_TOKEN_SECRETS as `kid:secret` pairs, in order (the first signs). Refuses a pair without a kid,
 * a secret under 32 bytes or a kid named twice, naming the key but never the secret.
 */
export function tokenSecrets(pairs: readonly string[]): { kid: string; secret: string }[] {
  const seen = new Set<string>()
  return pairs.map((pair, i) => {
    const colon = pair.indexOf(':')
    const kid = colon > 0 ? pair.slice(0, colon) : ''
    const secret = pair.slice(colon + 1)
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(kid)) throw new ConfigError(`GW_TOKEN_SECRETS: pair ${i + 1} must be kid:secret, the kid 1 to 64 letters, digits, '.', '_' or '-'`)
    if (Buffer.byteLength(secret) < 32) throw new ConfigError(`GW_TOKEN_SECRETS: the secret of kid ${kid} must be 32 bytes or more`)
    if (seen.has(kid)) throw new ConfigError(`GW_TOKEN_SECRETS: kid ${kid} is named twice`)
    seen.add(kid)
    return { kid, secret }
  })
}

export function isLoopback(host: string): boolean {
  return loopbackNames.has(host) || (isIP(host) === 4 && host.startsWith('127.'))
}

const durationUnits: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** A duration setting such as `30d`, `12h`, `90s` or `500ms`, in milliseconds (the schema checked its form). */
export function durationMs(value: string): number {
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(value)
  if (!match) throw new ConfigError(`not a duration: ${JSON.stringify(value)}`)
  return Number(match[1]) * (durationUnits[match[2] as string] as number)
}
