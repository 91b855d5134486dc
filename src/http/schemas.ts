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
    )
  },
  { $id: 'Upload' }
)

export const UploadParams = Type.Object({
  id: Type.String({ pattern: '^[0-9a-f]{32}$', description: 'Upload id.' })
})

const Check = Type.Object({ ok: Type.Boolean(), detail: Type.Optional(Type.String()) })

export const ReadyBody = Type.Object(
  {
    ok: Type.Boolean(),
    checks: Type.Object({ state: Check, quarantine: Check, production: Check, scanner: Check })
  },
  { $id: 'Readiness' }
)

export const HealthBody = Type.Object({ ok: Type.Boolean() })
