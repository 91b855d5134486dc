import { resolve } from 'node:path'
import { ESLint } from 'eslint'
import t from 'tap'

// The layout rules of eslint.config.js fire: each one on a deliberately wrong file, none on an
// allowed one. Removing or mistyping a rule (a pattern that matches no import) fails this test.
const eslint = new ESLint({ cwd: resolve(import.meta.dirname, '..') })

const ruleIds = async (filePath: string, code: string) => {
  const results = await eslint.lintText(code, { filePath })
  return results.flatMap((r) => r.messages.map((m) => m.ruleId ?? m.message))
}

// [file, import as written]: each must be refused by no-restricted-imports.
const wrongImports: Array<[string, string]> = [
  ['src/domain/x.ts', '../ports/job-queue.ts'],
  ['src/domain/x.ts', '../services/transition.ts'],
  ['src/domain/x.ts', '../adapters/state-store/row-mapping.ts'],
  ['src/domain/x.ts', '../http/schemas.ts'],
  ['src/domain/x.ts', '../config/config-schema.ts'],
  ['src/domain/x.ts', '../composition-root.ts'],
  ['src/ports/x.ts', '../services/transition.ts'],
  ['src/ports/x.ts', '../adapters/object-store/tags.ts'],
  ['src/ports/x.ts', '../http/schemas.ts'],
  ['src/ports/x.ts', '../config/config-schema.ts'],
  ['src/services/x.ts', '../adapters/state-store/open-state-store.ts'],
  ['src/services/x.ts', '../http/schemas.ts'],
  ['src/services/x.ts', '../config/load-config.ts'],
  ['src/services/x.ts', '../composition-root.ts'],
  ['src/services/x.ts', '../server.ts'],
  ['src/http/x.ts', '../adapters/scanner/clamd-scanner.ts'],
  ['src/http/routes/x.ts', '../../adapters/scanner/clamd-scanner.ts'],
  ['src/http/routes/x.ts', '../../composition-root.ts'],
  ['src/adapters/state-store/x.ts', '../../services/transition.ts'],
  ['src/adapters/webhook/x.ts', '../../http/schemas.ts'],
  ['src/adapters/x.ts', '../composition-root.ts'],
  ['src/config/x.ts', '../services/transition.ts'],
  ['src/config/x.ts', '../http/schemas.ts'],
  ['src/config/x.ts', '../adapters/scanner/clamd-endpoint-pool.ts']
]

// Imports the layer rules allow: within a layer, inward, packages, and adapters from the root.
const rightImports: Array<[string, string]> = [
  ['src/domain/x.ts', './errors.ts'],
  ['src/ports/x.ts', './upload-record.ts'],
  ['src/ports/x.ts', '../domain/upload-state.ts'],
  ['src/services/x.ts', '../ports/job-queue.ts'],
  ['src/services/x.ts', '../domain/errors.ts'],
  ['src/services/x.ts', './transition.ts'],
  ['src/services/x.ts', 'node:http'],
  ['src/services/x.ts', '@aws-sdk/client-s3'],
  ['src/http/routes/x.ts', '../../services/status-service.ts'],
  ['src/http/routes/x.ts', '../schemas.ts'],
  ['src/adapters/state-store/x.ts', '../../ports/job-queue.ts'],
  ['src/adapters/state-store/x.ts', './row-mapping.ts'],
  ['src/adapters/scanner/x.ts', '../object-store/abort-error.ts'],
  ['src/config/x.ts', './config-schema.ts'],
  ['src/composition-root.ts', './adapters/state-store/pg-state-store.ts'],
  ['src/composition-root.ts', './config/load-config.ts'],
  ['src/server.ts', './composition-root.ts'],
  ['test/x.test.ts', '../src/adapters/state-store/pg-state-store.ts']
]

const importing = (from: string) => `import { thing } from '${from}'\nexport const used = thing\n`

t.test('an import across the layers is an error of no-restricted-imports', async (t) => {
  for (const [file, from] of wrongImports) {
    t.same(await ruleIds(file, importing(from)), ['no-restricted-imports'], `${file} importing ${from}`)
  }
  // Type-only imports and re-exports are imports too.
  t.same(await ruleIds('src/services/x.ts', `import type { Thing } from '../adapters/a.ts'\nexport type T = Thing\n`), ['no-restricted-imports'], 'import type')
  t.same(await ruleIds('src/http/x.ts', `export { thing } from '../adapters/a.ts'\n`), ['no-restricted-imports'], 're-export')
})

t.test('an import the layers allow passes', async (t) => {
  for (const [file, from] of rightImports) {
    t.same(await ruleIds(file, importing(from)), [], `${file} importing ${from}`)
  }
})

t.test('process.env is read only in src/config', async (t) => {
  const reading = 'export const port = process.env.GW_PORT\n'
  t.same(await ruleIds('src/services/x.ts', reading), ['no-restricted-properties'], 'in services')
  t.same(await ruleIds('src/http/routes/x.ts', reading), ['no-restricted-properties'], 'in http')
  t.same(await ruleIds('src/server.ts', reading), ['no-restricted-properties'], 'in the entry point')
  t.same(await ruleIds('src/composition-root.ts', 'const { env } = process\nexport const port = env.GW_PORT\n'), ['no-restricted-properties'], 'destructured')
  t.same(await ruleIds('src/adapters/x.ts', `import { env } from 'node:process'\nexport const port = env.GW_PORT\n`), ['no-restricted-imports'], 'imported from node:process')
  t.same(await ruleIds('src/config/load-config.ts', reading), [], 'in src/config')
  t.same(await ruleIds('src/config/x.ts', `import { env } from 'node:process'\nexport const port = env.GW_PORT\n`), [], 'imported in src/config')
  t.same(await ruleIds('test/x.test.ts', reading), [], 'in tests')
  t.same(await ruleIds('scripts/x.ts', reading), [], 'in scripts')
  t.same(await ruleIds('bench/x.ts', reading), [], 'in the bench')
})

t.test('a file of src/ has at most 300 lines, blank lines not counted', async (t) => {
  const lines = (n: number) => Array.from({ length: n }, (_, i) => `export const v${i} = ${i}\n`).join('')
  t.same(await ruleIds('src/services/x.ts', lines(301)), ['max-lines'], '301 lines')
  t.same(await ruleIds('src/services/x.ts', lines(300)), [], '300 lines')
  t.same(await ruleIds('src/services/x.ts', lines(300).replaceAll('\n', '\n\n')), [], '300 lines spaced by blank lines')
  t.same(await ruleIds('src/services/x.ts', `// why\n${lines(300)}`), ['max-lines'], 'comments count')
  t.same(await ruleIds('test/x.test.ts', lines(400)), [], 'not in tests')
})
