import { spawnSync } from 'node:child_process'
import { cpus, freemem, loadavg, release, totalmem } from 'node:os'
import pg from 'pg'

export interface Machine {
  cores: number
  cpuModel: string
  memoryBytes: number
  freeMemoryBytes: number
  loadAverage: number[]
  node: string
  kernel: string
  clamd: string
  moto: string
  postgres: string
}

/** What the figures were measured on: they mean little without it. */
export async function machineFacts(pgUrl: string): Promise<Machine> {
  return {
    cores: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryBytes: totalmem(),
    freeMemoryBytes: freemem(),
    loadAverage: loadavg().map((l) => Math.round(l * 100) / 100),
    node: process.version,
    kernel: `${process.platform} ${release()}`,
    clamd: firstLine(spawnSync('sh', ['-c', 'PATH="$PATH:/usr/sbin" clamd --version'], { encoding: 'utf8' }).stdout),
    moto: firstLine(spawnSync('sh', ['-c', 'python3 -c "import moto; print(moto.__version__)" 2>/dev/null || moto_server --version'], { encoding: 'utf8' }).stdout),
    postgres: await postgresVersion(pgUrl)
  }
}

function firstLine(text: string | null): string {
  return (text ?? '').split('\n')[0]?.trim() || 'unknown'
}

async function postgresVersion(url: string): Promise<string> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 })
  try {
    await client.connect()
    const { rows } = await client.query<{ server_version: string }>('SHOW server_version')
    return rows[0]?.server_version ?? 'unknown'
  } catch (err) {
    return `unreachable (${(err as Error).message})`
  } finally {
    await client.end().catch(() => undefined)
  }
}
