import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import t from 'tap'
import { configTable, errorTable } from '../scripts/doc-tables.ts'

// The README's configuration and error tables are the code's, word for word.
const readme = await readFile(resolve(import.meta.dirname, '../README.md'), 'utf8')
const between = (name: string) => readme.split(`<!-- ${name}:start -->\n`)[1]?.split(`\n<!-- ${name}:end -->`)[0]

t.equal(between('config-table'), configTable(), 'README configuration table matches src/config/config-schema.ts (print it with: node scripts/doc-tables.ts)')
t.equal(between('error-table'), errorTable(), 'README error table matches src/domain/errors.ts')
t.match(readme, /```sh\n\.\/scripts\/first-run\.sh .*\nnpm test /, 'the quick start is two commands: first run, then npm test')
