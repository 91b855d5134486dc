import { writeFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { openApiDocument } from './openapi-document.ts'

// npm run openapi: rewrites openapi.yaml from the routes' schemas.
const path = resolve(import.meta.dirname, '../openapi.yaml')
await writeFile(path, await openApiDocument())
console.log(`wrote ${path}`)
