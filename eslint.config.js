import js from '@eslint/js'
import tseslint from 'typescript-eslint'

// The layer rules of src/ (README, Development; docs/architecture.md, Layers). A layer names the
// top-level folders of src/ it must not reach. The patterns are regular expressions on the import
// as written: one or more `../` and then the folder, so they match from any depth inside src/
// (`../adapters/x.ts` from src/services, `../../adapters/x.ts` from src/http/routes) and never a
// package whose path happens to contain the same word.
const reach = (folders) => `^(\\.\\./)+(${folders.join('|')})(/|$)`
const layer = (folders, message) => ({ regex: reach(folders), message })
// Nothing inside a layer imports the entry points: server.ts starts the composition root, and
// the composition root is the only place that wires adapters to services.
const entryPoints = {
  regex: '^(\\.\\./)+(composition-root|server)(\\.ts)?$',
  message: 'Only src/server.ts imports the composition root; a layer receives what it needs through its constructor.'
}
// process.env may be read only in src/config (see the rule below); this closes `import { env } from 'node:process'`.
const envImports = ['node:process', 'process'].map((name) => ({
  name,
  importNames: ['env'],
  message: 'Read settings in src/config (config-schema.ts) and pass them in; process.env is read only there.'
}))
const restrictImports = (patterns, paths = envImports) => ({ 'no-restricted-imports': ['error', { paths, patterns }] })

export default tseslint.config(
  { ignores: ['node_modules/', 'data/', '.tap/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'error'
    }
  },
  {
    files: ['scripts/**', 'test/**'],
    rules: { 'no-console': 'off' }
  },
  // The demo page's script runs in the browser, as it is (no build step).
  {
    files: ['src/http/demo/**/*.js'],
    languageOptions: {
      sourceType: 'script',
      globals: { globalThis: 'readonly', document: 'readonly', fetch: 'readonly', setTimeout: 'readonly', CSS: 'readonly' }
    }
  },

  // Settings come from the environment through one module, src/config, so that every key is in the
  // schema, validated once and listed in the README. Tests, bench and scripts are outside src/ and
  // not held to it: they are other programs with settings of their own, not the gateway's (the
  // ops client's GW_URL and GW_ADMIN_KEY, the bench's bare server, GW_TEST_PG_URL), and tests hand
  // loadConfig an env object of their own.
  {
    files: ['src/**/*.ts'],
    ignores: ['src/config/**'],
    rules: {
      'no-restricted-properties': ['error', {
        object: 'process',
        property: 'env',
        message: 'Read settings in src/config (config-schema.ts) and pass them in; process.env is read only there.'
      }],
      ...restrictImports([])
    }
  },

  // A file of src/ is short enough to read in one go; split it by what it holds when it grows.
  // Counted: what a reader reads, code and comments; blank lines are layout and do not count.
  {
    files: ['src/**/*.ts'],
    rules: { 'max-lines': ['error', { max: 300, skipBlankLines: true, skipComments: false }] }
  },


  // Layers. Only src/composition-root.ts (and src/server.ts, which starts it) import adapters.
  {
    files: ['src/domain/**/*.ts'],
    rules: restrictImports([
      layer(['ports', 'services', 'adapters', 'http', 'config'], 'domain/ imports nothing of ours outside domain/.'),
      entryPoints
    ])
  },
  {
    files: ['src/ports/**/*.ts'],
    rules: restrictImports([
      layer(['services', 'adapters', 'http', 'config'], 'ports/ import only domain/ and other ports.'),
      entryPoints
    ])
  },
  {
    files: ['src/services/**/*.ts'],
    rules: restrictImports([
      layer(['adapters', 'http', 'config'], 'services/ import only domain/ and ports/; the composition root hands them adapters and settings.'),
      entryPoints
    ])
  },
  {
    files: ['src/http/**/*.ts'],
    rules: restrictImports([
      layer(['adapters'], 'http/ never imports adapters/: routes call services, which the composition root wires.'),
      entryPoints
    ])
  },
  {
    files: ['src/adapters/**/*.ts'],
    rules: restrictImports([
      layer(['services', 'http'], 'adapters/ implement ports; they never import services/ or http/.'),
      entryPoints
    ])
  },
  {
    // src/config reads process.env, so the env imports are allowed here.
    files: ['src/config/**/*.ts'],
    rules: restrictImports([
      layer(['services', 'http', 'adapters'], 'config/ reads and validates settings; it imports no services/, http/ or adapters/.'),
      entryPoints
    ], [])
  }
)
