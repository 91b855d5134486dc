import Type from 'typebox'
import { publicStatuses } from '../domain/upload-state.ts'

/** The single source of the API's shapes: routes validate and serialise with these, openapi.yaml is generated from them. */

export const ErrorBody = Type.Object(
  {
    error: Type.Object({
      code: Type.String({ description: 'Stable error code, `GW_...`; see the README table.' }),
      message: Type.String()
    })
  },
  { $id: 'Error' }
)

export const UploadStatus = Type.Union(
  publicStatuses.map((s) => Type.Literal(s)),
  { description: 'pending → scanning → clean | infected | unscannable | failed' }
)

export const UploadAccepted = Type.Object(
  {
    id: Type.String(),
    status: Type.Literal('pending'),
    statusUrl: Type.String(),
    size: Type.Integer(),
    sha256: Type.String(),
    filename: Type.Union([Type.String(), Type.Null()])
  },
  { $id: 'UploadAccepted' }
)

export const Verdict = Type.Object(
  {
    result: Type.Union([Type.Literal('clean'), Type.Literal('infected'), Type.Literal('unscannable')]),
    signature: Type.Union([Type.String(), Type.Null()], { description: 'Signature name, for infected.' }),
    reason: Type.Union([Type.String(), Type.Null()], { description: 'Why the file could not be fully scanned, for unscannable.' }),
    engine: Type.String(),
    signatureVersion: Type.Union([Type.Integer(), Type.Null()])
  },
  { $id: 'Verdict' }
)

export const UploadView = Type.Object(
  {
    id: Type.String(),
    status: UploadStatus,
    size: Type.Integer(),
    sha256: Type.String(),
    filename: Type.Union([Type.String(), Type.Null()]),
    contentType: Type.String(),
    createdAt: Type.String({ format: 'date-time' }),
    scannedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    verdict: Type.Union([Verdict, Type.Null()]),
    object: Type.Optional(
      Type.Object({ bucket: Type.String(), key: Type.String() }, { description: 'Where the clean file is, once status is clean.' })
    ),
    released: Type.Optional(
      Type.Object(
        { by: Type.String(), at: Type.String({ format: 'date-time' }), reason: Type.String() },
        { description: 'Present when an operator released the upload despite its verdict.' }
      )
    )
  },
  { $id: 'Upload' }
)

const IsoDate = Type.String({ description: 'An ISO 8601 date or date-time.', minLength: 1 })

export const RescanRequest = Type.Object(
  {
    scope: Type.Union(
      [
        // No additionalProperties: false in the branches: Fastify's Ajv strips unknown keys while it
        // tries each branch, which would empty the body before the right branch is reached. The
        // service checks that exactly one scope is given.
        Type.Object({ all: Type.Literal(true) }),
        Type.Object({ prefix: Type.String({ minLength: 1, maxLength: 1024 }) }),
        Type.Object({ uploadedBefore: IsoDate }),
        Type.Object({ uploadedAfter: IsoDate }),
        Type.Object({ ids: Type.Array(Type.String({ pattern: '^[0-9a-f]{32}$' }), { minItems: 1, maxItems: 10_000 }) }),
        Type.Object({ signatureVersionBelow: Type.Integer({ minimum: 1 }) }),
        Type.Object({ adopt: Type.Object({ bucket: Type.Optional(Type.String({ minLength: 1 })), prefix: Type.Optional(Type.String()) }) })
      ],
      { description: 'Exactly one scope. `adopt` registers the objects of the production bucket (under a prefix) that the gateway does not know yet, and scans them.' }
    )
  },
  { $id: 'RescanRequest' }
)

export const RescanView = Type.Object(
  {
    id: Type.String(),
    scope: Type.Record(Type.String(), Type.Unknown()),
    state: Type.Union([Type.Literal('listing'), Type.Literal('running'), Type.Literal('done'), Type.Literal('cancelled')]),
    createdBy: Type.String(),
    createdAt: Type.String({ format: 'date-time' }),
    cancelledAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    total: Type.Integer({ description: 'Uploads covered (for an adoption: registered so far).' }),
    done: Type.Integer(),
    clean: Type.Integer(),
    infected: Type.Integer(),
    unscannable: Type.Integer(),
    failed: Type.Integer(),
    ratePerSecond: Type.Number({ description: 'Uploads finished per second since the rescan started.' }),
    estimatedEnd: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'At the current rate; null when unknown or finished.' })
  },
  { $id: 'Rescan' }
)

export const RescanParams = Type.Object({ id: Type.String({ format: 'uuid', description: 'Rescan id.' }) })

export const ReleaseRequest = Type.Object(
  { reason: Type.String({ minLength: 3, maxLength: 2000, description: 'Why the verdict is overridden; kept in the audit.' }) },
  { $id: 'ReleaseRequest', additionalProperties: false }
)

export const ScanView = Type.Object(
  {
    startedAt: Type.String({ format: 'date-time' }),
    durationMs: Type.Integer(),
    outcome: Type.Union([Type.Literal('clean'), Type.Literal('infected'), Type.Literal('unscannable'), Type.Literal('error')]),
    signature: Type.Union([Type.String(), Type.Null()]),
    detail: Type.Union([Type.String(), Type.Null()], { description: 'Why unscannable, or the error of a try without a verdict.' }),
    engine: Type.Union([Type.String(), Type.Null()]),
    signatureVersion: Type.Union([Type.Integer(), Type.Null()]),
    endpoint: Type.Union([Type.String(), Type.Null()]),
    bytes: Type.Integer()
  },
  { $id: 'Scan' }
)

export const AuditView = Type.Object(
  {
    at: Type.String({ format: 'date-time' }),
    actor: Type.String({ description: 'The admin key: `admin-` and the first 12 hex digits of its SHA-256.' }),
    action: Type.String(),
    target: Type.String(),
    detail: Type.Record(Type.String(), Type.Unknown())
  },
  { $id: 'AuditEntry' }
)

export const UploadHeaders = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({
      pattern: '^[\\x21-\\x7e]{1,255}$',
      description:
        'Makes a retry safe: a second POST with the same key (from the same caller, within 24 h) and the same file gets the first answer (same upload id) instead of a new upload; with a different file, 409 GW_IDEMPOTENCY_CONFLICT; while the first is still being received, 409 GW_IDEMPOTENCY_IN_PROGRESS with Retry-After. 1 to 255 visible ASCII characters (a UUID, say).'
    })
  )
})

export const UploadParams = Type.Object({
  id: Type.String({ pattern: '^[0-9a-f]{32}$', description: 'Upload id.' })
})

const Check = Type.Object({ ok: Type.Boolean(), detail: Type.Optional(Type.String()) })

export const ReadyBody = Type.Object(
  {
    ok: Type.Boolean(),
    checks: Type.Object({ state: Check, quarantine: Check, production: Check, scanner: Type.Optional(Check) })
  },
  { $id: 'Readiness' }
)

export const HealthBody = Type.Object({ ok: Type.Boolean() })
