import type { FastifyInstance } from 'fastify'
import { GatewayError } from '../domain/errors.ts'

/**
 * Every response names its request (x-request-id), and once the app starts closing, a request
 * that still arrives on a kept-alive connection is answered 503 GW_SHUTTING_DOWN: the client goes
 * to another replica, and a draining process is not ready. Registered first, so it runs first.
 */
export function answerWhileDraining(app: FastifyInstance): void {
  let closing = false
  app.addHook('preClose', async () => {
    closing = true
  })
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id)
    if (closing) throw new GatewayError('GW_SHUTTING_DOWN')
  })
}
