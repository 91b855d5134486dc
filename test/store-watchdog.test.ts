import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { watchStore } from '../src/services/store-watchdog.ts'
import { StreamMeter } from '../src/services/stream-meter.ts'

// A meter holding bytes nobody reads: to the watchdog, a store that takes nothing more.
function backedUpMeter(): StreamMeter {
  const meter = new StreamMeter()
  meter.write(Buffer.alloc(64 * 1024))
  return meter
}

t.test('a store that takes no bytes but keeps storing parts is slow, not hung', async (t) => {
  const meter = backedUpMeter()
  let stalled = 0
  const watchdog = watchStore(meter, 300, () => stalled++)
  t.teardown(() => watchdog.stop())
  // A part stored every 100 ms for 1.2 s: four timeouts' worth with no byte taken.
  for (let i = 0; i < 12; i++) {
    await sleep(100)
    watchdog.progress()
  }
  t.equal(stalled, 0, 'parts stored count as progress')
  // Then nothing at all: hung.
  for (let i = 0; i < 40 && stalled === 0; i++) await sleep(50)
  t.equal(stalled, 1, 'a store that stores nothing more is taken for hung, once')
})

t.test('waiting for the client is not the store stalling', async (t) => {
  const meter = new StreamMeter()
  let stalled = 0
  const watchdog = watchStore(meter, 100, () => stalled++)
  t.teardown(() => watchdog.stop())
  await sleep(500)
  t.equal(stalled, 0, 'nothing buffered and the body not ended: the store waits for the client')
})

t.test('waiting for a part buffer other uploads hold is not the store stalling; once it has one, the clock runs again', async (t) => {
  const meter = backedUpMeter()
  let stalled = 0
  const watchdog = watchStore(meter, 100, () => stalled++)
  t.teardown(() => watchdog.stop())
  watchdog.hold(true)
  await sleep(500)
  t.equal(stalled, 0, 'five timeouts waiting for a buffer, bytes backed up: not counted')
  watchdog.hold(false)
  for (let i = 0; i < 40 && stalled === 0; i++) await sleep(50)
  t.equal(stalled, 1, 'with its buffer, a store that takes nothing more is taken for hung')
})
