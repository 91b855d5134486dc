/**
 * The operator's API from a command line: `npm run ops -- <command> [options]`.
 * Talks to a running gateway at GW_URL (default http://127.0.0.1:8080) with the admin key in
 * GW_ADMIN_KEY, and prints the JSON answers. Exit code 1 on an error answer, 2 on bad usage.
 */
import { parseArgs } from 'node:util'

const usage = `usage: npm run ops -- <command> [options]
  rescan --all | --prefix P | --uploaded-before DATE [--uploaded-after DATE] | --ids ID,ID,... | --signature-below N
  adopt [--prefix P] [--bucket B]        register objects already in the production bucket, and scan them
  rescans                                list rescans, newest first
  rescan-status ID                       progress of a rescan
  cancel ID                              cancel a rescan
  rescan-upload UPLOAD_ID                rescan one upload now (a failed one goes back to pending)
  release UPLOAD_ID --reason "..."       release a false positive to production
  scans UPLOAD_ID                        scan history of an upload
  audit [--limit N]                      admin actions, newest first
environment: GW_URL (default http://127.0.0.1:8080), GW_ADMIN_KEY (required)`

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    all: { type: 'boolean' },
    prefix: { type: 'string' },
    bucket: { type: 'string' },
    'uploaded-before': { type: 'string' },
    'uploaded-after': { type: 'string' },
    ids: { type: 'string' },
    'signature-below': { type: 'string' },
    reason: { type: 'string' },
    limit: { type: 'string' },
    help: { type: 'boolean', short: 'h' }
  }
})

function fail(message: string): never {
  process.stderr.write(`${message}\n\n${usage}\n`)
  process.exit(2)
}

function scopeFromOptions(): Record<string, unknown> {
  if (values.all) return { all: true }
  if (values.ids) return { ids: values.ids.split(',').map((s) => s.trim()).filter(Boolean) }
  if (values['signature-below']) return { signatureVersionBelow: Number(values['signature-below']) }
  if (values['uploaded-before'] || values['uploaded-after']) {
    return { ...(values['uploaded-before'] ? { uploadedBefore: values['uploaded-before'] } : {}), ...(values['uploaded-after'] ? { uploadedAfter: values['uploaded-after'] } : {}) }
  }
  if (values.prefix) return { prefix: values.prefix }
  return fail('rescan needs a scope: --all, --prefix, --uploaded-before/--uploaded-after, --ids or --signature-below')
}

const [command, arg] = positionals
if (values.help || !command) fail('')
const key = process.env.GW_ADMIN_KEY ?? fail('GW_ADMIN_KEY is not set')
const base = (process.env.GW_URL ?? 'http://127.0.0.1:8080').replace(/\/+$/, '')
const need = (what: string): string => arg ?? fail(`${command} needs ${what}`)

const requests: Record<string, () => [string, string, unknown?]> = {
  rescan: () => ['POST', '/v1/rescans', { scope: scopeFromOptions() }],
  adopt: () => ['POST', '/v1/rescans', { scope: { adopt: { ...(values.prefix ? { prefix: values.prefix } : {}), ...(values.bucket ? { bucket: values.bucket } : {}) } } }],
  rescans: () => ['GET', '/v1/rescans'],
  'rescan-status': () => ['GET', `/v1/rescans/${need('a rescan id')}`],
  cancel: () => ['DELETE', `/v1/rescans/${need('a rescan id')}`],
  'rescan-upload': () => ['POST', `/v1/uploads/${need('an upload id')}/rescan`],
  release: () => ['POST', `/v1/uploads/${need('an upload id')}/release`, { reason: values.reason ?? fail('release needs --reason') }],
  scans: () => ['GET', `/v1/uploads/${need('an upload id')}/scans`],
  audit: () => ['GET', `/v1/audit${values.limit ? `?limit=${Number(values.limit)}` : ''}`]
}
const build = requests[command] ?? fail(`unknown command ${command}`)
const [method, path, body] = build()
const res = await fetch(`${base}${path}`, {
  method,
  headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
  ...(body === undefined ? {} : { body: JSON.stringify(body) })
}).catch((err: unknown) => {
  process.stderr.write(`cannot reach the gateway at ${base}: ${(err as Error).cause ?? (err as Error).message}\n`)
  process.exit(1)
})
const text = await res.text()
process.stdout.write(`${text ? JSON.stringify(JSON.parse(text), null, 2) : `(${res.status})`}\n`)
process.exit(res.ok ? 0 : 1)
