import { configSchema } from '../src/config/config-schema.ts'
import { errorCodes } from '../src/domain/errors.ts'

/** The README's configuration and error tables, as the code defines them (a test checks the README holds them). */
export function configTable(): string {
  const rows = Object.entries(configSchema.properties).map(([key, schema]) => {
    const s = schema as { default?: unknown; description?: string }
    const def = Array.isArray(s.default) ? s.default.join(',') : String(s.default)
    return `| \`${key}\` | ${def === '' ? '(empty)' : `\`${def}\``} | ${s.description ?? ''} |`
  })
  return ['| key | default | meaning |', '| --- | --- | --- |', ...rows].join('\n')
}

export function errorTable(): string {
  const rows = Object.entries(errorCodes).map(([code, e]) => `| \`${code}\` | ${e.status} | ${e.message} |`)
  return ['| code | HTTP status | default message |', '| --- | --- | --- |', ...rows].join('\n')
}

if (import.meta.main) console.log(`${configTable()}\n\n${errorTable()}`)
