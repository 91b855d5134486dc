import Type from 'typebox'

/**
 * The API's request shapes and its error: routes validate and serialise with these, openapi.yaml is
 * generated from them. The views it answers with are defined by the services that build them
 * (upload-view.ts, rescan-view.ts, history-reader.ts, readiness-service.ts).
 */

export const ErrorBody = Type.Object(
  {
    error: Type.Object({
      code: Type.String({ description: 'Stable error code, `GW_...`; see the README table.' }),
      message: Type.String()
    })
  },
  { $id: 'Error' }
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

export const RescanParams = Type.Object({ id: Type.String({ format: 'uuid', description: 'Rescan id.' }) })

export const ReleaseRequest = Type.Object(
  { reason: Type.String({ minLength: 3, maxLength: 2000, description: 'Why the verdict is overridden; kept in the audit.' }) },
  { $id: 'ReleaseRequest', additionalProperties: false }
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

export const StatusQuery = Type.Object({
  wait: Type.Optional(
    Type.Integer({
      minimum: 0,
      maximum: 30,
      description: 'Long poll: with If-None-Match, wait up to this many seconds for the status to differ from that ETag (then 200 at once), else 304. 0 or absent: answer at once.'
    })
  )
})

export const HealthBody = Type.Object({ ok: Type.Boolean() })

/**
 * Any request whose headers take longer than GW_HEADERS_TIMEOUT_MS is answered 408 GW_TOO_SLOW
 * (app.ts): said on the routes that have no other client error, so every operation lists one.
 */
export const headersTooSlow = {
  408: Type.Object(ErrorBody.properties, { description: 'GW_TOO_SLOW: the request headers did not arrive within GW_HEADERS_TIMEOUT_MS' })
}

export const UploadTokenRequest = Type.Object(
  {
    sub: Type.Optional(Type.String({ minLength: 1, maxLength: 256, description: 'The end user: recorded with each upload and sent in webhooks.' })),
    maxSize: Type.Optional(Type.Integer({ minimum: 1, description: 'Largest upload in bytes, at most GW_MAX_UPLOAD_BYTES (the default).' })),
    types: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 255 }), { minItems: 1, maxItems: 100, description: 'Allowed MIME types (`image/png`, `image/*`), within GW_ALLOWED_TYPES; default: what the gateway allows.' })
    ),
    maxUploads: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, description: 'How many uploads the token may create; default 1.' })),
    meta: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'Any JSON object of at most 1 KiB, shown in the status and sent in webhooks.' })),
    ttlSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 3600, description: 'Lifetime in seconds; default 900, at most 3600.' }))
  },
  { $id: 'UploadTokenRequest', additionalProperties: false }
)

export const MintedUploadToken = Type.Object(
  {
    token: Type.String({ description: 'An HS256 JWT: send it as `Authorization: Bearer <token>`.' }),
    expiresAt: Type.String({ format: 'date-time' })
  },
  { $id: 'UploadToken' }
)
