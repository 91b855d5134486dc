import type { Gateway } from './composition-root.ts'
import type { Config } from './config/config-schema.ts'

/** A gateway that listens: where, and how to stop it. */
export interface Serving {
  /** The main listener's address (http://host:port). */
  address: string
  /** Graceful: see shutdown. */
  stop(graceMs: number): Promise<void>
}

/**
 * Listens on GW_PORT (and GW_OPS_PORT when set), then starts the gateway's work: the scan worker
 * and the background loops. The process entry (server.ts) and the in-process test gateways serve
 * through here, so both listen and stop alike.
 */
export async function serve(gateway: Gateway, config: Pick<Config, 'GW_HOST' | 'GW_PORT' | 'GW_OPS_PORT'>): Promise<Serving> {
  const address = await gateway.app.listen({ host: config.GW_HOST, port: config.GW_PORT })
  await gateway.opsApp?.listen({ host: config.GW_HOST, port: config.GW_OPS_PORT })
  gateway.work.start()
  return { address, stop: (graceMs) => shutdown(gateway, graceMs) }
}

/**
 * Stops taking requests (a request on a kept-alive connection is answered 503 GW_SHUTTING_DOWN),
 * lets in-flight requests and work finish within graceMs, then cuts the connections left and
 * closes the stores. Also closes a gateway that never listened.
 */
export async function shutdown(gateway: Gateway, graceMs: number): Promise<void> {
  const apps = gateway.opsApp ? [gateway.app, gateway.opsApp] : [gateway.app]
  const grace = setTimeout(() => {
    for (const a of apps) a.server.closeAllConnections()
  }, graceMs)
  await Promise.all([...apps.map((a) => a.close()), gateway.work.stop(graceMs)])
  clearTimeout(grace)
  await gateway.close()
}
