import t from 'tap'
import { assertTransition, backoffMs, claimableStatuses, isReleasedVerdict, publicStatus, releasableStatuses, rescannableStatuses } from '../src/domain/upload-state.ts'

t.test('the state machine allows only its written transitions', async (t) => {
  for (const [from, to] of [
    ['pending', 'scanning'],
    ['scanning', 'promoting'],
    ['scanning', 'infected'],
    ['scanning', 'unscannable'],
    ['scanning', 'pending'],
    ['scanning', 'failed'],
    ['promoting', 'promoting'],
    ['promoting', 'clean'],
    ['promoting', 'failed'],
    ['scanning', 'clean'],
    ['scanning', 'requarantining'],
    ['clean', 'clean'],
    ['clean', 'requarantining'],
    ['requarantining', 'infected'],
    ['requarantining', 'unscannable'],
    ['infected', 'promoting'],
    ['failed', 'promoting'],
    ['failed', 'pending']
  ] as const) {
    t.doesNotThrow(() => assertTransition(from, to), `${from} -> ${to}`)
  }
  for (const [from, to] of [
    ['pending', 'clean'],
    ['promoting', 'pending'],
    ['requarantining', 'clean'],
    ['clean', 'pending'],
    ['promoting', 'infected'],
    ['infected', 'clean'],
    ['failed', 'clean'],
    ['clean', 'infected'],
    ['unscannable', 'clean'],
    ['rejected', 'promoting'],
    ['rejected', 'pending'],
    ['rejected', 'rejected']
  ] as const) {
    t.throws(() => assertTransition(from, to), { message: `illegal upload transition ${from} -> ${to}` })
  }
})

t.test('promoting shows as scanning: clean only once the production copy exists', async (t) => {
  t.equal(publicStatus('promoting'), 'scanning')
  t.equal(publicStatus('clean'), 'clean')
})

t.test('rejected is final: shown as it is, never claimed, rescanned or released', async (t) => {
  t.equal(publicStatus('rejected', 'rejected'), 'rejected')
  for (const list of [claimableStatuses, rescannableStatuses, releasableStatuses]) t.notOk(list.includes('rejected'))
})

t.test('backoff doubles, is capped, and is jittered within [ceiling/2, ceiling]', async (t) => {
  t.equal(backoffMs(1, 1000, 60_000, () => 1), 1000)
  t.equal(backoffMs(3, 1000, 60_000, () => 1), 4000)
  t.equal(backoffMs(3, 1000, 60_000, () => 0), 2000)
  t.equal(backoffMs(20, 1000, 60_000, () => 1), 60_000)
  t.equal(backoffMs(0, 1000, 60_000, () => 1), 1000)
})

t.test('a released upload is left in production only by the very verdict it was released with', async (t) => {
  const infected = (signature: string) => ({ result: 'infected', signature }) as const
  const unscannable = { result: 'unscannable', signature: null } as const
  t.ok(isReleasedVerdict({ status: 'infected', signature: 'Sig.A' }, infected('Sig.A')))
  t.notOk(isReleasedVerdict({ status: 'infected', signature: 'Sig.A' }, infected('Sig.B')), 'another signature')
  t.notOk(isReleasedVerdict({ status: 'infected', signature: 'Sig.A' }, unscannable), 'no longer fully scanned')
  t.ok(isReleasedVerdict({ status: 'unscannable', signature: null }, unscannable))
  t.notOk(isReleasedVerdict({ status: 'unscannable', signature: null }, infected('Sig.A')), 'a detection of one released unscannable')
  t.notOk(isReleasedVerdict({ status: 'failed', signature: null }, infected('Sig.A')), 'released while failed: never judged')
  t.notOk(isReleasedVerdict({ status: 'failed', signature: null }, unscannable))
})
