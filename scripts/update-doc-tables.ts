// Rewrites the README configuration and error tables from the code: node scripts/update-doc-tables.ts
import { readFileSync, writeFileSync } from 'node:fs'
import { configTable, errorTable } from './doc-tables.ts'
let s = readFileSync('README.md', 'utf8')
for (const [name, table] of [['config-table', configTable()], ['error-table', errorTable()]] as const) {
  s = s.replace(new RegExp(`(<!-- ${name}:start -->\\n)[\\s\\S]*?(\\n<!-- ${name}:end -->)`), `$1${table}$2`)
}
writeFileSync('README.md', s)
