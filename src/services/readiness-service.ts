import Type, { type Static } from 'typebox'
import type { Area, AreaHealth, ObjectStore } from '../ports/object-store.ts'
import type { Scanner } from '../ports/scanner.ts'
import type { StateDatabase } from '../ports/state-database.ts'

const Check = Type.Object({ ok: Type.Boolean(), detail: Type.Optional(Type.String()) })
type Check = Static<typeof Check>

/** The answer of /readyz. scanner is absent where this process does not scan (GW_ROLE=api): clamd is not its business. */
export const Readiness = Type.Object(
  {
    ok: Type.Boolean(),
    checks: Type.Object({ state: Check, quarantine: Check, production: Check, scanner: Type.Optional(Check) })
  },
  { $id: 'Readiness' }
)
export type Readiness = Static<typeof Readiness>

const checkTimeoutMs = 5_000

/**
 * Whether this gateway can do its job now: the state store, both buckets, and (where it scans) a
 * scanner whose latest health check detected EICAR. The scanner answers from its cached checks;
 * concurrent callers share one round of the other checks, so a burst of /readyz requests costs
 * one round, not one each.
 */
export class ReadinessService {
  readonly #deps: { objects: ObjectStore; database: StateDatabase; scanner: Scanner }
  readonly #scannerRequired: boolean
  #running: Promise<Readiness> | null = null

  constructor(deps: { objects: ObjectStore; database: StateDatabase; scanner: Scanner }, options: { scannerRequired: boolean }) {
    this.#deps = deps
    this.#scannerRequired = options.scannerRequired
  }

  check(): Promise<Readiness> {
    this.#running ??= this.#check().finally(() => {
      this.#running = null
    })
    return this.#running
  }

  async #check(): Promise<Readiness> {
    const { objects, database, scanner } = this.#deps
    const [stateCheck, areas, scannerCheck] = await Promise.all([
      bounded('state store', async () => {
        await database.ping()
        return { ok: true }
      }),
      bounded('object store', () => objects.check()),
      this.#scannerRequired ? bounded('scanner', () => scanner.readiness()) : null
    ])
    const area = (name: Area): Check => {
      if (!Array.isArray(areas)) return areas
      const health = areas.find((h) => h.area === name)
      if (!health) return { ok: false, detail: 'not checked' }
      return health.ok ? { ok: true } : { ok: false, detail: health.detail ?? 'unavailable' }
    }
    const checks = { state: stateCheck, quarantine: area('quarantine'), production: area('production'), ...(scannerCheck ? { scanner: scannerCheck } : {}) }
    return { ok: Object.values(checks).every((c) => c.ok), checks }
  }
}

/** Runs one check with a deadline; a throw or a timeout becomes a failed check that says why. */
async function bounded<T extends Check | AreaHealth[]>(what: string, fn: () => Promise<T>): Promise<T | Check> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<Check>((resolve) => {
    timer = setTimeout(() => resolve({ ok: false, detail: `${what} did not answer within ${checkTimeoutMs} ms` }), checkTimeoutMs)
  })
  try {
    return await Promise.race([fn(), timeout])
  } catch (err) {
    return { ok: false, detail: `${what}: ${(err as Error).message}` }
  } finally {
    clearTimeout(timer)
  }
}
