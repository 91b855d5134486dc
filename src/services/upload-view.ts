import Type, { type Static, type TLiteral } from 'typebox'
import { publicStatuses } from '../domain/upload-state.ts'

/**
 * An upload as its client sees it, defined once: the status route serialises it with this schema,
 * openapi.yaml is generated from it, and StatusService builds values of its type.
 */

/** A literal schema per value, typed as the tuple it is (Array.map would widen it to an array, whose union TypeBox types as never). */
const literals = <T extends readonly string[]>(values: T) => values.map((v) => Type.Literal(v)) as { -readonly [K in keyof T]: TLiteral<T[K]> }

export const UploadStatus = Type.Union(
  literals(publicStatuses),
  { description: 'pending → scanning → clean | infected | unscannable | failed; rejected: a tus upload whose content type is not allowed (never scanned)' }
)

export const Verdict = Type.Object(
  {
    result: Type.Union([Type.Literal('clean'), Type.Literal('infected'), Type.Literal('unscannable'), Type.Literal('rejected')]),
    signature: Type.Union([Type.String(), Type.Null()], { description: 'Signature name, for infected.' }),
    reason: Type.Union([Type.String(), Type.Null()], { description: 'Why the file could not be fully scanned, for unscannable; which content type was refused, for rejected.' }),
    engine: Type.String({ description: 'The scanner engine; `content-type` for rejected.' }),
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
    sub: Type.Optional(Type.Union([Type.String(), Type.Null()], { description: "The upload token's `sub` (the end user), when a token created the upload." })),
    meta: Type.Optional(
      Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()], { description: "The upload token's `meta`, when a token created the upload." })
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
export type UploadView = Static<typeof UploadView>
