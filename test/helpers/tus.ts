import * as tus from 'tus-js-client'

export interface TusDone {
  url: string
  statusUrl: string | null
  /** Upload-Offset of the first HEAD, when the upload was resumed. */
  resumedAt: number | null
}

export interface TusOptions {
  headers?: Record<string, string>
  metadata?: Record<string, string>
  chunkSize?: number
  /** Resume this upload (HEAD, then PATCH from its offset) instead of creating one. */
  uploadUrl?: string
  /** Abort once this many bytes were sent: resolves with the upload's URL, unfinished. */
  abortAt?: number
}

/** Uploads `data` with tus-js-client (Node stack, no retries: a failure is the test's). */
export function tusUpload(endpoint: string, data: Buffer, options: TusOptions = {}): Promise<TusDone> {
  return new Promise((resolve, reject) => {
    let resumedAt: number | null = null
    let aborted = false
    const upload: tus.Upload = new tus.Upload(data, {
      endpoint,
      ...(options.uploadUrl ? { uploadUrl: options.uploadUrl } : {}),
      headers: options.headers ?? {},
      metadata: options.metadata ?? {},
      chunkSize: options.chunkSize ?? Number.POSITIVE_INFINITY,
      retryDelays: null,
      storeFingerprintForResuming: false,
      onAfterResponse(req, res) {
        if (req.getMethod() === 'HEAD' && resumedAt === null) resumedAt = Number(res.getHeader('Upload-Offset'))
      },
      onProgress(sent) {
        if (options.abortAt !== undefined && sent >= options.abortAt && !aborted) {
          aborted = true
          upload.abort().then(() => resolve({ url: upload.url ?? '', statusUrl: null, resumedAt }), reject)
        }
      },
      onSuccess({ lastResponse }) {
        if (aborted) return
        resolve({ url: upload.url ?? '', statusUrl: lastResponse.getHeader('Upload-Status-Url') ?? null, resumedAt })
      },
      onError: reject
    })
    upload.start()
  })
}
