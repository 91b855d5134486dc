/** An upload's status as the gateway serves it, for the bare baselines when no real one is given. */
export const sampleStatusBody = JSON.stringify({
  id: '9d2c4e0f8a6b4c1d9e7f3a2b1c0d4e5f',
  status: 'clean',
  size: 48213,
  sha256: 'c0535e4be2b79ffd93291305436bf889314e4a3faec05ecffcbb7df31ad9e51a',
  filename: 'scan.pdf',
  contentType: 'application/pdf',
  createdAt: '2026-11-25T10:00:00.000Z',
  scannedAt: '2026-11-25T10:00:01.200Z',
  verdict: { result: 'clean', signature: null, reason: null, engine: 'ClamAV 1.4.6', signatureVersion: null },
  object: { bucket: 'bench-production', key: '9d2c4e0f8a6b4c1d9e7f3a2b1c0d4e5f' }
})
