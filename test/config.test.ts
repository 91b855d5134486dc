import { spawnSync } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import t from 'tap'
import { parseClamdEndpoint } from '../src/config/clamd-endpoints.ts'
import { ConfigError, isLoopback, loadConfig, tokenSecrets } from '../src/config/load-config.ts'

const configDir = resolve(import.meta.dirname, '../config')
const load = (env: Record<string, string>) => loadConfig({ env, configDir })

t.test('embedded defaults: fs store, SQLite, local clamd, loopback', async (t) => {
  const config = load({})
  t.match(config, { GW_HOST: '127.0.0.1', GW_PORT: 8080, GW_STORE: 'fs', GW_DATABASE_URL: 'sqlite:./data/gateway.db' })
  t.same(config.GW_CLAMD, [{ kind: 'tcp', url: 'tcp://127.0.0.1:3310', host: '127.0.0.1', port: 3310 }])
  t.same(config.GW_UPLOAD_KEYS, [])
})

t.test('environment overrides files, with types read from the schema', async (t) => {
  const config = load({
    GW_PORT: '9000',
    GW_S3_FORCE_PATH_STYLE: 'true',
    GW_CLAMD: 'tcp://a:3310, unix:///run/clamd.sock,tcp://[::1]:3310',
    GW_UPLOAD_KEYS: 'abcdefghijklmnop,qrstuvwxyz012345',
    GW_CORS_ORIGINS: ''
  })
  t.equal(config.GW_PORT, 9000)
  t.equal(config.GW_S3_FORCE_PATH_STYLE, true)
  t.same(
    config.GW_CLAMD.map((e) => e.url),
    ['tcp://a:3310', 'unix:///run/clamd.sock', 'tcp://[::1]:3310'],
    'GW_CLAMD arrives parsed, in order'
  )
  t.match(config.GW_CLAMD, [{ kind: 'tcp', host: 'a', port: 3310 }, { kind: 'unix', path: '/run/clamd.sock' }, { kind: 'tcp', host: '::1' }])
  t.same(config.GW_UPLOAD_KEYS, ['abcdefghijklmnop', 'qrstuvwxyz012345'])
  t.same(config.GW_CORS_ORIGINS, [])
})

t.test('GW_CONFIG_FILE layers a file over the defaults', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'gw-config-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'prod.json')
  await writeFile(file, JSON.stringify({ GW_STORE: 's3', GW_QUARANTINE_BUCKET: 'q', GW_PRODUCTION_BUCKET: 'p', GW_SCAN_CONCURRENCY: 2 }))
  const config = load({ GW_CONFIG_FILE: file, GW_SCAN_CONCURRENCY: '6' })
  t.match(config, { GW_STORE: 's3', GW_QUARANTINE_BUCKET: 'q', GW_SCAN_CONCURRENCY: 6 })
  await writeFile(file, '{"GW_PORT": "eighty"}')
  t.throws(() => load({ GW_CONFIG_FILE: file }), { message: new RegExp(`^GW_PORT: .* from ${file}`) })
  await writeFile(file, '{not json')
  t.throws(() => load({ GW_CONFIG_FILE: file }), { message: /is not valid JSON/ })
  t.throws(() => load({ GW_CONFIG_FILE: join(dir, 'missing.json') }), { message: /cannot read config file/ })
  await writeFile(file, '{"GW_TYPO": 1}')
  t.throws(() => load({ GW_CONFIG_FILE: file }), { message: /^GW_TYPO: unknown setting/ })
})

t.test('bad values stop start-up with the key that is wrong', async (t) => {
  const cases: [Record<string, string>, RegExp][] = [
    [{ GW_PORT: 'abc' }, /^GW_PORT: must be a whole number/],
    [{ GW_PORT: '70000' }, /^GW_PORT: must be <= 65535/],
    [{ GW_STORE: 'gcs' }, /^GW_STORE: must be one of fs, s3/],
    [{ GW_S3_FORCE_PATH_STYLE: 'maybe' }, /^GW_S3_FORCE_PATH_STYLE: must be true or false/],
    [{ GW_CLAMD: 'clamd:3310' }, /^GW_CLAMD: "clamd:3310" is not tcp:\/\/host:port or unix:\/\/\/path/],
    [{ GW_DATABASE_URL: 'mysql://x' }, /^GW_DATABASE_URL: /],
    [{ GW_DATABASE_URL: 'postgres://[bad' }, /^GW_DATABASE_URL: not a valid postgres:\/\/ URL/],
    [{ GW_DATABASE_SCHEMA: 'Gate-way' }, /^GW_DATABASE_SCHEMA: /],
    [{ GW_ROLE: 'scanner' }, /^GW_ROLE: must be one of all, api, worker/],
    [{ GW_ROLE: 'worker', GW_SCAN_CONCURRENCY: '0' }, /^GW_SCAN_CONCURRENCY: must be above 0 when GW_ROLE=worker/],
    [{ GW_UPLOAD_MEMORY_BYTES: '1000' }, /^GW_UPLOAD_MEMORY_BYTES: must be >= 1048576/],
    [{ GW_MAX_UPLOAD_BYTES: '0' }, /^GW_MAX_UPLOAD_BYTES: must be >= 1/],
    [{ GW_SCANNER_MAX_BYTES: String(4 * 1024 ** 3) }, /^GW_SCANNER_MAX_BYTES: must be <= 2097152000/],
    [{ GW_UPLOAD_KEYS: 'short' }, /^GW_UPLOAD_KEYS: every key must be 16 characters or more/],
    [{ GW_HOST: '0.0.0.0' }, /^GW_UPLOAD_KEYS: required when listening on 0.0.0.0/],
    [{ GW_STORE: 's3', GW_QUARANTINE_BUCKET: 'same', GW_PRODUCTION_BUCKET: 'same' }, /^GW_PRODUCTION_BUCKET: must differ/],
    [{ GW_STORE: 's3', GW_S3_ENDPOINT: 'not a url' }, /^GW_S3_ENDPOINT: not a URL/],
    [{ GW_RETRY_BASE_MS: '1000', GW_RETRY_MAX_MS: '10' }, /^GW_RETRY_MAX_MS: /],
    [{ GW_KEY_PREFIX: '../up' }, /^GW_KEY_PREFIX: /],
    [{ GW_LOG_LEVEL: 'loud' }, /^GW_LOG_LEVEL: must be one of fatal, error/],
    [{ GW_PROT: '1' }, /^GW_PROT: unknown setting/],
    [{ GW_ALLOWED_TYPES: 'image/png,pdf' }, /^GW_ALLOWED_TYPES: "pdf" is not a MIME type/],
    [{ GW_ALLOWED_TYPES: '*/png' }, /^GW_ALLOWED_TYPES: "\*\/png" is not a MIME type/],
    [{ GW_TOKEN_SECRETS: `k1:${'s'.repeat(31)}` }, /^GW_TOKEN_SECRETS: the secret of kid k1 must be 32 bytes or more$/],
    [{ GW_TOKEN_SECRETS: 's'.repeat(40) }, /^GW_TOKEN_SECRETS: pair 1 must be kid:secret/],
    [{ GW_TOKEN_SECRETS: `:${'s'.repeat(40)}` }, /^GW_TOKEN_SECRETS: pair 1 must be kid:secret/],
    [{ GW_TOKEN_SECRETS: `k1:${'a'.repeat(32)},k 2:${'b'.repeat(32)}` }, /^GW_TOKEN_SECRETS: pair 2 must be kid:secret/],
    [{ GW_TOKEN_SECRETS: `k1:${'a'.repeat(32)},k1:${'b'.repeat(32)}` }, /^GW_TOKEN_SECRETS: kid k1 is named twice$/]
  ]
  for (const [env, message] of cases) t.throws(() => load(env), { name: 'ConfigError', message }, JSON.stringify(env))
  t.ok(load({ GW_HOST: '0.0.0.0', GW_UPLOAD_KEYS: 'abcdefghijklmnop' }), 'any address with upload keys')
  t.match(load({ GW_DATABASE_URL: 'postgresql://gw:secret@db:5432/gw', GW_ROLE: 'api' }), { GW_DATABASE_URL: 'postgresql://gw:secret@db:5432/gw', GW_ROLE: 'api' })
  t.type(new ConfigError('x'), Error)
  t.match(load({ GW_ALLOWED_TYPES: 'image/*, application/pdf,Text/CSV' }), { GW_ALLOWED_TYPES: ['image/*', 'application/pdf', 'Text/CSV'] }, 'MIME types and wildcards, any case')
  t.same(tokenSecrets(load({ GW_TOKEN_SECRETS: `new:${'n'.repeat(32)}, old:${'o:'.repeat(16)}` }).GW_TOKEN_SECRETS), [
    { kid: 'new', secret: 'n'.repeat(32) },
    { kid: 'old', secret: 'o:'.repeat(16) }
  ], 'kid:secret pairs in order; a secret may hold colons')
})

t.test('clamd endpoints are parsed strictly', async (t) => {
  t.match(parseClamdEndpoint('tcp://127.0.0.1:3310'), { kind: 'tcp', host: '127.0.0.1', port: 3310 })
  t.match(parseClamdEndpoint('tcp://clamd.internal:3310'), { kind: 'tcp', host: 'clamd.internal', port: 3310 })
  t.match(parseClamdEndpoint('tcp://[::1]:3310'), { kind: 'tcp', host: '::1', port: 3310 })
  t.match(parseClamdEndpoint('unix:///run/clamav/clamd.ctl'), { kind: 'unix', path: '/run/clamav/clamd.ctl' })
  const bad = ['', 'clamd:3310', 'http://127.0.0.1:3310', 'tcp://127.0.0.1', 'tcp://:3310', 'tcp://h:3310/x', 'tcp://h:3310/', 'tcp://u@h:3310', 'tcp://h:99999', 'unix://relative.sock', 'unix:///']
  for (const url of bad) {
    t.throws(() => parseClamdEndpoint(url), { message: `${JSON.stringify(url)} is not tcp://host:port or unix:///path` }, JSON.stringify(url))
    t.throws(() => load({ GW_CLAMD: url || ',' }), { name: 'ConfigError', message: /^GW_CLAMD: / }, `config refuses ${JSON.stringify(url)}`)
  }
})

t.test('GW_DEMO: loopback only, with token secrets', async (t) => {
  const secrets = { GW_TOKEN_SECRETS: `demo:${'s'.repeat(32)}` }
  t.equal(load({ GW_DEMO: 'true', ...secrets }).GW_DEMO, true)
  t.equal(load({ GW_DEMO: 'true', GW_HOST: '::1', ...secrets }).GW_DEMO, true)
  t.throws(() => load({ GW_DEMO: 'true', GW_HOST: '0.0.0.0', GW_UPLOAD_KEYS: 'u'.repeat(16), ...secrets }), { name: 'ConfigError', message: /^GW_DEMO: allowed only with GW_HOST on a loopback address \(got "0.0.0.0"\)/ })
  t.throws(() => load({ GW_DEMO: 'true' }), { name: 'ConfigError', message: /^GW_DEMO: needs GW_TOKEN_SECRETS/ })
  t.equal(load({}).GW_DEMO, false, 'off by default')
})

t.test('loopback addresses', async (t) => {
  for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', '::1']) t.ok(isLoopback(host), host)
  for (const host of ['0.0.0.0', '::', '10.0.0.1', 'example.com']) t.notOk(isLoopback(host), host)
})

t.test('the server refuses to start on a bad config, naming the key', async (t) => {
  const result = spawnSync(process.execPath, ['src/server.ts'], {
    cwd: resolve(import.meta.dirname, '..'),
    env: { ...process.env, GW_HOST: '0.0.0.0' },
    encoding: 'utf8',
    timeout: 20_000
  })
  t.equal(result.status, 2)
  t.match(result.stderr, /configuration error: GW_UPLOAD_KEYS: required when listening on 0\.0\.0\.0/)
})
