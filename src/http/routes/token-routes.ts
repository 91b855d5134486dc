import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { GatewayError } from '../../domain/errors.ts'
import type { TokenMinter } from '../../services/token-minting.ts'
import type { Auth } from '../auth.ts'
import { rateLimited } from '../rate-limits.ts'
import { ErrorBody, MintedUploadToken, UploadTokenRequest } from '../schemas.ts'

interface Deps {
  auth: Auth
  /** null: the gateway has no GW_TOKEN_SECRETS. */
  tokens: TokenMinter | null
}

/** Minting upload tokens for a browser: an application backend's alternative to signing them itself. */
export const tokenRoutes: FastifyPluginAsyncTypebox<Deps> = async (app, { auth, tokens }) => {
  app.post(
    '/v1/upload-tokens',
    {
      // A token cannot mint tokens: it would outlive itself.
      onRequest: auth.require('upload', { tokens: 'refuse' }),
      config: rateLimited('tokens'),
      schema: {
        operationId: 'createUploadToken',
        summary: 'Mint an upload token for a browser',
        description:
          'With an upload or admin key (never a token: 403). The token is an HS256 JWT signed with the first of GW_TOKEN_SECRETS; the browser sends it as `Authorization: Bearer <token>` on uploads and on the status of the uploads it created. 400 when it would grant more than the gateway allows (maxSize above GW_MAX_UPLOAD_BYTES, types outside GW_ALLOWED_TYPES, meta over 1 KiB). 404 when the gateway has no GW_TOKEN_SECRETS.',
        body: UploadTokenRequest,
        response: { 201: MintedUploadToken, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 429: ErrorBody }
      }
    },
    async (request, reply) => {
      if (!tokens) throw new GatewayError('GW_NOT_FOUND', 'upload tokens are off on this gateway: set GW_TOKEN_SECRETS')
      return reply.code(201).send(await tokens.mint(request.body))
    }
  )
}
