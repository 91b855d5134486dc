import { createServer, connect, type Socket } from 'node:net'
import { once } from 'node:events'

/**
 * pass: forwards to the target. refuse: not listening (ECONNREFUSED). hang: accepts and never answers.
 * reset: accepts and resets the connection at once (ECONNRESET).
 */
export type ProxyMode = 'pass' | 'refuse' | 'hang' | 'reset'

export interface FaultyProxy {
  port: number
  readonly mode: ProxyMode
  /** Also ends every open connection, so pooled keep-alive sockets cannot bypass the new fault. */
  setMode(mode: ProxyMode): Promise<void>
  stop(): Promise<void>
}

/** A loopback TCP proxy in front of targetPort, for "S3 fails for a while" tests. */
export async function startFaultyProxy(targetPort: number, initial: ProxyMode = 'pass'): Promise<FaultyProxy> {
  let mode: ProxyMode = initial
  const open = new Set<Socket>()
  const track = (s: Socket): void => {
    open.add(s)
    s.once('close', () => open.delete(s))
    s.on('error', () => undefined) // resets are the point of this proxy
  }

  const server = createServer((client) => {
    track(client)
    if (mode === 'reset') return void client.resetAndDestroy()
    if (mode === 'hang') return void client.resume() // read and drop, never answer
    const upstream = connect(targetPort, '127.0.0.1')
    track(upstream)
    client.pipe(upstream).pipe(client)
    client.once('close', () => upstream.destroy())
    upstream.once('close', () => client.destroy())
  })

  const listen = async (port: number): Promise<void> => {
    server.listen(port, '127.0.0.1')
    await once(server, 'listening')
  }
  const unlisten = async (): Promise<void> => {
    if (!server.listening) return
    const closed = once(server, 'close')
    server.close()
    await closed
  }

  await listen(0)
  const address = server.address()
  if (!address || typeof address !== 'object') throw new Error('proxy has no address')
  const port = address.port
  if (mode === 'refuse') await unlisten()

  return {
    port,
    get mode() {
      return mode
    },
    async setMode(next) {
      mode = next
      for (const s of open) s.resetAndDestroy()
      if (next === 'refuse') await unlisten()
      else if (!server.listening) await listen(port)
    },
    async stop() {
      for (const s of open) s.destroy()
      await unlisten()
    }
  }
}
