import type { FastifyBaseLogger } from 'fastify'

type Method = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace'
/** pino's standard levels (the gateway defines no others). */
const levels: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Number.POSITIVE_INFINITY }

/**
 * Fastify's childLoggerFactory: a request's logger that makes its pino child (bound to the request
 * id) only when the request logs something at a level it logs. A child is not free (its bindings go
 * through the redaction of every path), and most status polls log nothing: their route logs at
 * warn. Every line a request logs still carries its reqId.
 */
export function lazyRequestLogger(parent: FastifyBaseLogger, bindings: Record<string, unknown>, options: { level?: string }): FastifyBaseLogger {
  let real: FastifyBaseLogger | null = null
  const child = (): FastifyBaseLogger => (real ??= parent.child(bindings, options))
  const log =
    (method: Method) =>
    (...args: unknown[]): void => {
      if (real === null && levels[method]! < (levels[options.level ?? parent.level] ?? 0)) return
      ;(child()[method] as (...a: unknown[]) => void)(...args)
    }
  return {
    get level() {
      return real?.level ?? options.level ?? parent.level
    },
    set level(level: string) {
      child().level = level
    },
    fatal: log('fatal'),
    error: log('error'),
    warn: log('warn'),
    info: log('info'),
    debug: log('debug'),
    trace: log('trace'),
    silent: () => {},
    child: (b, o) => child().child(b, o)
  } as FastifyBaseLogger
}
