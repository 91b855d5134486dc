/** clamd's one-line commands (PING, VERSION): one z-command per connection, a NUL-terminated reply. */
import { ScannerError, type EngineVersion, type ScannerEndpoint } from '../../ports/scanner.ts'
import { abortedError, connectClamd, type ConnectOptions } from './clamd-connection.ts'
import { parseVersion, ReplyBuffer } from './clamd-replies.ts'

export interface CommandOptions extends ConnectOptions {
  /** Bound for the whole exchange after connecting. */
  timeoutMs: number
}

/** Sends one z-command and returns clamd's NUL-terminated reply (without the NUL). */
async function command(endpoint: ScannerEndpoint, name: string, opts: CommandOptions): Promise<string> {
  const { socket, onData } = await connectClamd(endpoint, opts)
  return new Promise<string>((resolve, reject) => {
    const received = new ReplyBuffer()
    const settle = (err: Error | null, reply?: string) => {
      clearTimeout(timer)
      opts.signal?.removeEventListener('abort', onAbort)
      socket.destroy()
      if (err) reject(err)
      else resolve(reply ?? '')
    }
    const onAbort = () => settle(abortedError(opts.signal))
    const timer = setTimeout(
      () => settle(new ScannerError('idle_timeout', `clamd at ${endpoint.url} did not answer ${name} within ${opts.timeoutMs} ms`)),
      opts.timeoutMs
    )
    opts.signal?.addEventListener('abort', onAbort, { once: true })
    onData((data) => {
      try {
        received.push(data, `reply to ${name}`)
      } catch (err) {
        return settle(err as ScannerError)
      }
      const reply = received.complete()
      if (reply !== null) settle(null, reply)
    })
    socket.on('close', () =>
      settle(new ScannerError('unavailable', `clamd at ${endpoint.url} closed the connection without answering ${name}`))
    )
    socket.write(`z${name}\0`)
  })
}

export async function ping(endpoint: ScannerEndpoint, opts: CommandOptions): Promise<void> {
  const reply = await command(endpoint, 'PING', opts)
  if (reply !== 'PONG') throw new ScannerError('protocol', `unexpected reply to PING: ${JSON.stringify(reply)}`)
}

export async function version(endpoint: ScannerEndpoint, opts: CommandOptions): Promise<EngineVersion> {
  return parseVersion(await command(endpoint, 'VERSION', opts))
}
