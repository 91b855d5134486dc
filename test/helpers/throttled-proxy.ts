import { once } from 'node:events'
import { connect, createServer, type Socket } from 'node:net'

export interface ThrottledProxy {
  port: number
  stop(): Promise<void>
}

/**
 * A loopback TCP proxy in front of targetPort that forwards what its clients send at no more than
 * `bytesPerSecond`, shared by all connections (a slow or saturated S3): answers pass unthrottled.
 */
export async function startThrottledProxy(targetPort: number, bytesPerSecond: number): Promise<ThrottledProxy> {
  const open = new Set<Socket>()
  const track = (s: Socket): void => {
    open.add(s)
    s.once('close', () => open.delete(s))
    s.on('error', () => undefined)
  }
  // The time at which the shared budget has room again.
  let freeAt = 0
  const server = createServer((client) => {
    track(client)
    const upstream = connect(targetPort, '127.0.0.1')
    track(upstream)
    upstream.pipe(client)
    client.on('data', (chunk: Buffer) => {
      const drained = upstream.write(chunk)
      const now = Date.now()
      freeAt = Math.max(freeAt, now) + (chunk.length / bytesPerSecond) * 1000
      const wait = freeAt - now
      if (wait <= 0 && drained) return
      client.pause()
      let pending = (wait > 0 ? 1 : 0) + (drained ? 0 : 1)
      const step = (): void => {
        if (--pending === 0 && !client.destroyed) client.resume()
      }
      if (wait > 0) setTimeout(step, wait)
      if (!drained) upstream.once('drain', step)
    })
    client.once('end', () => upstream.end())
    client.once('close', () => upstream.destroy())
    upstream.once('close', () => client.destroy())
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  if (!address || typeof address !== 'object') throw new Error('proxy has no address')
  return {
    port: address.port,
    async stop() {
      for (const s of open) s.destroy()
      const closed = once(server, 'close')
      server.close()
      await closed
    }
  }
}
