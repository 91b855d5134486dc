import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import t from 'tap'
import { parse, stringify } from 'yaml'

// openapi.yaml passes `redocly lint` with its recommended rules: no error and no warning, so that
// generated clients get a server, method names (operationId) and error responses for every route.
const root = resolve(import.meta.dirname, '..')
const cli = resolve(root, 'node_modules/@redocly/cli/bin/cli.js')

interface Problem {
  ruleId: string
  severity: string
  message: string
  location: Array<{ pointer: string }>
}

/** Runs the CLI offline (no telemetry, no update check) on one file and returns its problems. */
function lint(file: string): Promise<Problem[]> {
  return new Promise((done, fail) => {
    execFile(
      process.execPath,
      [cli, 'lint', file, '--extends=recommended', '--format=json', '--max-problems=1000'],
      { cwd: root, timeout: 60_000, env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true', CI: 'true' } },
      (err, stdout, stderr) => {
        try {
          done((JSON.parse(stdout) as { problems: Problem[] }).problems)
        } catch {
          fail(new Error(`redocly lint gave no report (${err?.message ?? 'no error'}): ${stderr.slice(-2000)}`))
        }
      }
    )
  })
}

const described = (problems: Problem[]) => problems.map((p) => `${p.severity} ${p.ruleId} at ${p.location[0]?.pointer}: ${p.message}`)

t.test('openapi.yaml: no error, no warning under the recommended rules', async (t) => {
  t.same(described(await lint('openapi.yaml')), [], 'fix the route schemas or scripts/openapi-document.ts, then npm run openapi')
})

t.test('every operation has a camelCase operationId, unique in the document', async (t) => {
  const document = parse(await readFile(resolve(root, 'openapi.yaml'), 'utf8')) as { paths: Record<string, Record<string, { operationId?: string }>> }
  const ids = Object.entries(document.paths).flatMap(([path, operations]) =>
    Object.entries(operations).map(([method, operation]) => ({ where: `${method.toUpperCase()} ${path}`, id: operation.operationId }))
  )
  for (const { where, id } of ids) t.match(id, /^[a-z][a-zA-Z0-9]+$/, `${where} has a camelCase operationId`)
  t.equal(new Set(ids.map((i) => i.id)).size, ids.length, 'operationIds are unique')
})

// The check can fail: the same file without its servers and one operationId is refused.
t.test('the lint reports what it should', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'gw-redocly-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const document = parse(await readFile(resolve(root, 'openapi.yaml'), 'utf8'))
  delete document.servers
  delete document.paths['/healthz'].get.operationId
  const file = join(dir, 'broken.yaml')
  await writeFile(file, stringify(document))
  const rules = (await lint(file)).map((p) => `${p.severity} ${p.ruleId}`).sort()
  t.same(rules, ['error no-empty-servers', 'warn operation-operationId'])
})
