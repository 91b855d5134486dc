import { pipeline, Transform, type Readable } from 'node:stream'
import { fileTypeFromBuffer } from 'file-type'
import { isActiveType, listAllows, normalizeType } from '../domain/media-types.ts'
import { markupType, textType, utf8Text } from './text-sniffing.ts'

export { isActiveType, withinAllowed } from '../domain/media-types.ts'

/** How many first bytes are sniffed: file-type's own sample size (reasonableDetectionSizeInBytes). */
export const SNIFF_BYTES = 4100

/** Content with neither a known binary signature nor valid UTF-8 text. */
export const UNKNOWN_TYPE = 'application/octet-stream'

/**
 * Names a stream's content type from its first bytes while passing every byte through unchanged,
 * with the stream's own backpressure: only the sample (SNIFF_BYTES) is copied aside, never the file.
 * `detected` settles once the sample is complete (or the stream ended); it rejects if the stream
 * fails first. Errors travel both ways: a failing source fails `output`, destroying `output`
 * destroys the source.
 */
export function sniffContentType(source: Readable, sampleBytes = SNIFF_BYTES): { output: Readable; detected: Promise<string> } {
  const chunks: Buffer[] = []
  let sampled = 0
  let settled = false
  let onSample!: (sample: Buffer, cut: boolean) => void
  let onError!: (err: unknown) => void
  const sampling = new Promise<{ sample: Buffer; cut: boolean }>((resolve, reject) => {
    onSample = (sample, cut) => resolve({ sample, cut })
    onError = reject
  })
  const take = (cut: boolean): void => {
    if (settled) return
    settled = true
    onSample(Buffer.concat(chunks, sampled), cut)
    chunks.length = 0
  }
  const output = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      if (!settled) {
        // A full sample followed by more bytes: the sample cuts the file.
        if (sampled >= sampleBytes) take(true)
        else {
          const part = chunk.subarray(0, sampleBytes - sampled)
          chunks.push(Buffer.from(part)) // a copy: the chunk itself is not held
          sampled += part.length
          if (part.length < chunk.length) take(true)
        }
      }
      callback(null, chunk)
    },
    flush(callback) {
      take(false)
      callback()
    }
  })
  pipeline(source, output, (err) => {
    if (err && !settled) {
      settled = true
      onError(err)
    }
  })
  const detected = sampling.then(({ sample, cut }) => detectType(sample, cut))
  // Nobody may be waiting for it when the upload fails first.
  detected.catch(() => undefined)
  return { output, detected }
}

/** file-type's answer (XML refined to SVG or HTML by its root element), else the text rules, else unknown. */
export async function detectType(sample: Uint8Array, cut: boolean): Promise<string> {
  if (sample.length === 0) return UNKNOWN_TYPE
  const found = await fileTypeFromBuffer(sample).catch(() => undefined)
  if (found) {
    if (found.mime !== 'application/xml') return found.mime
    const text = utf8Text(sample, cut)
    return (text === null ? null : markupType(text)) ?? found.mime
  }
  const text = utf8Text(sample, cut)
  return text === null || text.length === 0 ? UNKNOWN_TYPE : textType(text, cut)
}

/** The verdict reason (and 415 message) of an upload refused for its content: names the detected type. */
export function rejectionReason(detected: string): string {
  return `content type ${detected} is not allowed here`
}

/** Whether a detected type may be stored, and how a browser must be given it. */
export interface TypeJudgement {
  allowed: boolean
  /** An active type (HTML, SVG, XML, JavaScript): promoted with `Content-Disposition: attachment`. */
  attachment: boolean
}

/**
 * GW_ALLOWED_TYPES (empty: any type) and an upload token's `types` (null: no narrowing), judged
 * against the detected type. Wildcards (`image/*`, `*\/*`) never cover active types: those pass
 * only where a list names them exactly.
 */
export class ContentTypePolicy {
  readonly #allowed: readonly string[]

  constructor(allowed: readonly string[]) {
    this.#allowed = allowed.map(normalizeType)
  }

  judge(detected: string, tokenTypes: readonly string[] | null): TypeJudgement {
    const type = normalizeType(detected)
    const allowed = listAllows(this.#allowed, type) && (tokenTypes === null || tokenTypes.some((entry) => listAllows([entry], type)))
    return { allowed, attachment: isActiveType(type) }
  }
}
