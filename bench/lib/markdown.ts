import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ProfileSummary } from './cpu-profile.ts'
import { REPO_ROOT } from './gateway-process.ts'
import type { Machine } from './machine.ts'
import type { ScenarioResult } from './types.ts'

export interface RunFacts {
  startedAt: Date
  seconds: number
  machine: Machine
  loadAverageAtEnd: number[]
}

const GiB = 1024 ** 3

/** What each scenario does and what its baseline is: the part of BENCHMARKS.md that is not figures. */
const METHOD: Record<number, string> = {
  1: 'Files of each size are POSTed to the gateway (`multipart/form-data` with a Content-Length, streamed from a generator, unique content per file) with N uploads in flight, and uploaded directly to the same moto with `@aws-sdk/lib-storage` with the same part size and queue size. MB/s = bytes of accepted files ÷ wall time (MB = 10^6 bytes). The two sides alternate which goes first; every bucket is emptied between runs. One gateway process per file size (`GW_ROLE=api`: no scans), warmed up with 16 small uploads.',
  2: 'One client, one 10 KiB upload at a time, gateway and direct `PutObject` interleaved request by request (so the machine\'s drift hits both alike), after 20 warm-up pairs. Latency = from the request\'s first byte to the end of the 202 (gateway) or of the PutObject answer.',
  3: 'N unique files are written to local disk, uploaded with scanning off (`GW_ROLE=api`), then a worker process (`GW_ROLE=worker`, `GW_SCAN_CONCURRENCY=4`, `GW_CLAMD_MAX_PER_ENDPOINT=4`) scans and promotes them all: files/s = clean files ÷ (last upload\'s final write − first scan\'s start, both from the state store). Baseline (the goal): a direct pipeline written in the bench on the same moto, 4 files at once, doing per file only the unavoidable work: GET from the quarantine bucket streamed into clamd INSTREAM (the gateway\'s own client), CopyObject to production with the tags set in the copy (`TaggingDirective: REPLACE`), DeleteObject; files/s = clean files ÷ its wall time. Also reported, without a goal: the same files read from local disk and sent to clamd with INSTREAM, 4 at once (raw clamd). Each side gets a fresh clamd, so none meets verdicts cached from another. moto\'s CPU seconds are read from /proc over each S3 side\'s window and shown as cores used (of the 2).',
  4: 'VmRSS of the gateway process, read from /proc every 50 ms, while it takes one very large upload, and 64 large uploads at once. The baseline is the goal threshold itself. prom-client\'s heap and external-memory gauges are sampled alongside (every 250 ms) to show what the memory is made of. The gateway runs with `GW_S3_PART_SIZE_BYTES=5 MiB`, `GW_S3_QUEUE_SIZE=1` (the smallest the gateway allows) and `GW_UPLOAD_MEMORY_BYTES` at its default, 128 MiB: the part buffers all uploads share (25 of 5 MiB); an upload that finds none free waits for one with its request unread, it is not refused (a refusal would count as a failure). "Flat": RSS grows by at most 32 MiB from the second quarter of the upload to the last. The 64 × 100 MiB figures come from scenario 1\'s 100 MiB × 64 cell (same settings, same run), so 6.4 GiB go through moto once, not twice.',
  5: 'autocannon (in the bench process) holds 100 connections on `GET /v1/uploads/:id` with random ids among 1000 existing uploads (half of them clean), after a warm-up; SQLite, then PostgreSQL (a fresh schema, dropped afterwards). Goal 5\'s baseline, for both stores: a bare Fastify route (`bench/bare-fastify-server.ts`, its own node process as the gateway is; no database, auth, hooks or logging) serving from memory the JSON the gateway served for a clean upload, with an ETag, under the same load. The absolute goal of 10,000 req/s on SQLite is kept too, next to a bare `node:http` server answering a fixed JSON body of the same size.',
  6: 'A million synthetic stored uploads (5% due for a rescan, 88% due in the next 30 days, 7% infected, unscannable, failed or pending) are loaded in bulk (SQLite: one transaction with a prepared INSERT after the adapter\'s migrate(); PostgreSQL: `INSERT … SELECT FROM generate_series`, then ANALYZE as autovacuum would). One claimer then calls `claimRescans(owner, 4, lease, now)` in a loop, as a worker with 4 free slots does. Baseline: raw clamd INSTREAM of small (10 KiB) unique files, 4 at once: the most rescans clamd could take.',
  7: 'N unique objects (320; 30 of every 32 are 64 KiB, one 192 KiB, one 1 MiB: a mean of 100 KB) are uploaded through the gateway and scanned clean (not timed). Then, with fresh clamds (no cached verdicts), a gateway process (`GW_ROLE=all`, `GW_CLAMD_MAX_PER_ENDPOINT=4`, `GW_SCAN_CONCURRENCY` = 4 per endpoint, `GW_RESCAN_SHARE=1` since nothing else is due) is ready (`/readyz`), gets `POST /v1/rescans {"scope": {"all": true}}`, and objects/s = clean objects ÷ the time from that request until `GET /v1/rescans/:id` (polled every 100 ms) says `done`. Baseline: GET of each object from the production bucket streamed into clamd INSTREAM (the gateway\'s own client), the same concurrency spread over the same number of fresh clamds. With 1 and 2 clamd endpoints on the same 2 cores. A file costs a fixed part plus a part per byte, so a mix with a mean of 100 KB runs at the rate of 100 KB files: the projection for a million 100 KB objects is a million ÷ objects/s. The clamds load the test signatures only (about 20 MiB each, started in a fraction of a second); a clamd with the full ClamAV database needs about 1 GiB and tens of seconds to start.',
  8: '1,000 clients, each on its own upload (SQLite, seeded as in scenario 5) and its own connection, send `GET /v1/uploads/:id?wait=30` with that upload\'s ETag in `If-None-Match`, so every one waits. Memory per client = (the gateway\'s VmRSS once `gateway_status_waiters` counts all of them − its VmRSS just before, after every ETag was read once) ÷ 1,000, each the median of five /proc samples. Reference, same way: the bare Fastify route holding as many requests on a timer. `GW_MAX_CONNECTIONS` is set to 1,100 (the default 1,024 leaves no room for the bench\'s own connections). Reported without a goal; RSS deltas of a few MiB are noisy (the garbage collector may run in between).'
}

export function markdown(results: ScenarioResult[], facts: RunFacts, chartPath: string): string {
  const m = facts.machine
  const rows = results.flatMap((r) => r.rows)
  const missed = rows.filter((r) => r.met === false)
  const lines: string[] = []
  lines.push('# Benchmarks', '')
  lines.push('<!-- Written by `npm run bench` (bench/run.ts) from bench/results/latest.json. Edit bench/, not this file. -->', '')
  lines.push(
    `Full run of ${facts.startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC, ${Math.round(facts.seconds)} s, on ${m.cores} cores (${m.cpuModel}), ${Math.round(m.memoryBytes / GiB)} GiB, ${m.kernel}; Node ${m.node}; ${m.clamd} with the test signatures; moto ${m.moto}; PostgreSQL ${m.postgres}. Load average at the start: ${m.loadAverage.join(', ')}; at the end: ${facts.loadAverageAtEnd.join(', ')} (1, 5 and 15 minutes: above 2, something else competed for the 2 cores).`,
    ''
  )
  lines.push(
    'Each scenario runs the gateway as its own process (`node src/server.ts`, as `npm start` does) against its baseline, in the same run, on the same inputs; the load generators and baselines run in the bench process. moto stands in for S3: it is a single Python process, so on 2 cores it competes with the gateway, clamd and the load generator for CPU. Figures on another machine, or against real S3, will differ; the ratios are what these runs compare.',
    ''
  )
  lines.push(`![Gateway ÷ baseline for every row](${chartPath})`, '')
  lines.push('## Results', '')
  lines.push('| # | case | metric | gateway | baseline | ratio | goal | met? | notes |', '| --- | --- | --- | ---: | ---: | ---: | --- | --- | --- |')
  for (const result of results) {
    if (result.skipped) lines.push(`| ${result.id} | ${result.title}: not run | | | | | | | ${escape(result.skipped)} |`)
    for (const r of result.rows) {
      lines.push(
        `| ${r.scenario} | ${escape(r.case)} | ${r.metric} | ${fmt(r.gateway)} | ${fmt(r.baseline)} (${r.baselineLabel}) | ${r.ratio} | ${r.goal ?? '—'} | ${r.met === null ? '—' : r.met ? 'yes' : '**no**'} | ${escape(r.note ?? '')} |`
      )
    }
  }
  lines.push('')
  lines.push(`Ratio = gateway ÷ baseline (for ms and MiB, lower is better). Scenarios: ${results.map((r) => `${r.id}. ${r.title} (${r.seconds} s)`).join(', ')}.`, '')

  lines.push('## Goals missed', '')
  if (missed.length === 0) lines.push('None in this run.', '')
  for (const result of results) {
    const own = result.rows.filter((r) => r.met === false)
    if (own.length === 0) continue
    lines.push(`### ${result.id}. ${result.title}`, '')
    for (const r of own) {
      lines.push(`- **${escape(r.case)}**: ${fmt(r.gateway)} ${r.metric} against ${fmt(r.baseline)} (${r.baselineLabel}), ratio ${r.ratio}, goal ${r.goal}. ${escape(r.note ?? '')}`)
      if (r.evidence) lines.push(`  ${escape(r.evidence)}`)
    }
    lines.push('')
    for (const p of result.profiles ?? []) lines.push(...profileSection(p))
    for (const skipped of result.profilesSkipped ?? []) lines.push(`Not profiled in this run: ${escape(skipped)}.`, '')
  }

  const analysis = join(REPO_ROOT, 'bench', 'analysis.md')
  if (existsSync(analysis)) lines.push(readFileSync(analysis, 'utf8').trim(), '')

  lines.push('## How each scenario is measured', '')
  for (const result of results) lines.push(`${result.id}. **${result.title}.** ${METHOD[result.id] ?? ''}`, '')
  lines.push('## Running it', '')
  lines.push(
    '```sh',
    'npm run bench                 # every scenario, full inputs (about 10 minutes on 2 cores); rewrites this file, bench/results/latest.json and bench/results/chart.svg',
    'npm run bench -- --quick      # every scenario on small inputs (under a minute; CI runs it to check the benchmarks still run): bench/results/quick.json only',
    'npm run bench -- --only=1,4   # some scenarios (bench/results/partial.json); --no-profile skips profiling missed goals; --keep keeps the scratch directory',
    'npm run bench -- --report     # this file and the chart again from bench/results/latest.json (after editing bench/analysis.md)',
    '```',
    '',
    'It needs what the tests need: `moto_server`, `clamd` (Debian\'s clamav-daemon) and PostgreSQL on 127.0.0.1:5432 (`GW_TEST_PG_URL` to use another). Every process it starts is stopped at the end, on failure and on Ctrl-C too. For a missed goal the run measures the case again with the gateway\'s inspector open on a loopback port and samples its CPU during the measured window only (scenario 6: the bench process itself), after every scenario has measured and only while the run stays within its 10 minutes; the summary above is the profile\'s self time, native code charged to its JS caller. Scenario 4\'s "profile" is the memory breakdown at the peak. With `--keep` the raw `.cpuprofile` files stay in the scratch directory (open them in Chrome DevTools).',
    ''
  )
  return lines.join('\n')
}

function profileSection(p: ProfileSummary): string[] {
  const out = [`Profile: ${escape(p.label)}. ${p.totalMs} ms sampled, ${p.idlePct}% idle (waiting on I/O). Busy time by where the code lives:`, '']
  out.push('| area | self ms | share of busy |', '| --- | ---: | ---: |')
  for (const a of p.areas.slice(0, 8)) out.push(`| ${escape(a.area)} | ${a.selfMs} | ${a.pct}% |`)
  out.push('', 'Top functions by self time:', '', '| function | where | self ms | share of busy |', '| --- | --- | ---: | ---: |')
  for (const f of p.top.slice(0, 10)) out.push(`| \`${escape(f.fn)}\` | ${escape(f.where)} | ${f.selfMs} | ${f.pct}% |`)
  out.push('')
  return out
}

function fmt(n: number): string {
  return Math.abs(n) >= 10_000 ? n.toLocaleString('en') : String(n)
}

function escape(s: string): string {
  return s.replaceAll('|', '\\|').replaceAll('\n', ' ')
}

