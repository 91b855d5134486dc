import type { GatewayProcess } from './gateway-process.ts'
import { MiB } from './content.ts'
import { round } from './proc.ts'

/**
 * Samples prom-client's memory gauges every 250 ms; keeps the sample where V8's heap and the
 * Buffers (external memory) together were largest: what the process was really holding. RSS can
 * stay high after that, since the allocator keeps freed memory.
 */
export function sampleBreakdown(gateway: GatewayProcess): { stop(): Promise<Record<string, number> | null> } {
  let best: Record<string, number> | null = null
  let running = true
  const names = ['process_resident_memory_bytes', 'nodejs_heap_size_used_bytes', 'nodejs_heap_size_total_bytes', 'nodejs_external_memory_bytes']
  const loop = (async () => {
    while (running) {
      try {
        const res = await fetch(`${gateway.url}/metrics`, { signal: AbortSignal.timeout(2000) })
        const text = await res.text()
        const sample: Record<string, number> = {}
        for (const name of names) {
          const line = text.split('\n').find((l) => l.startsWith(`${name} `))
          if (line) sample[name.replace(/_bytes$/, 'MiB')] = round(Number(line.slice(name.length + 1)) / MiB, 1)
        }
        const live = (s: Record<string, number>): number => (s.nodejs_heap_size_totalMiB ?? 0) + (s.nodejs_external_memoryMiB ?? 0)
        if (!best || live(sample) > live(best)) best = sample
      } catch {
        // a busy gateway may answer late: skip this sample
      }
      await new Promise((r) => setTimeout(r, 250))
    }
  })()
  return {
    async stop() {
      running = false
      await loop
      return best
    }
  }
}
