/**
 * Reading clamd's NUL-terminated replies and mapping them exactly: only a reply clamd is known
 * to send becomes a verdict or a version; anything else is a ScannerError.
 */
import { ScannerError, type EngineVersion, type ScanVerdict } from '../../ports/scanner.ts'

/** A reply longer than this is not one clamd sends. */
const MAX_REPLY_BYTES = 64 * 1024

/** Bytes received from clamd until its NUL-terminated reply is complete. */
export class ReplyBuffer {
  #received = Buffer.alloc(0)

  /** Adds received bytes; throws 'protocol' once they are more than any reply (what: for the message). */
  push(data: Buffer, what: string): void {
    this.#received = Buffer.concat([this.#received, data])
    if (this.#received.length > MAX_REPLY_BYTES && this.#received.indexOf(0) < 0) {
      throw new ScannerError('protocol', `clamd ${what} is too long`)
    }
  }

  /** Whether clamd sent anything at all. */
  get started(): boolean {
    return this.#received.length > 0
  }

  /** The reply without its NUL once complete, else null. */
  complete(): string | null {
    const nul = this.#received.indexOf(0)
    return nul < 0 ? null : this.#received.subarray(0, nul).toString('utf8')
  }

  /** The start of what arrived, for an error message. */
  preview(): string {
    return JSON.stringify(this.#received.toString('utf8', 0, 200))
  }
}

const VERSION_RE = /^(ClamAV \d+(?:\.\d+)*[^/\s]*)(?:\/(\d+)\/([^/]+))?$/

/** `ClamAV 1.4.6` or `ClamAV 1.4.6/27500/Tue Nov 24 09:00:00 2026`. */
export function parseVersion(reply: string): EngineVersion {
  const m = VERSION_RE.exec(reply.trim())
  if (!m?.[1]) throw new ScannerError('protocol', `unexpected reply to VERSION: ${JSON.stringify(reply)}`)
  return { engine: m[1], signatureVersion: m[2] ? Number(m[2]) : null, signatureDate: m[3] ?? null }
}

/**
 * Heuristic "detections" that mean clamd could not fully scan the content (AlertExceedsMax,
 * AlertEncrypted*): the file is unscannable, neither clean nor malware.
 */
const UNSCANNABLE: { re: RegExp; why: string }[] = [
  { re: /^Heuristics\.Limits\.Exceeded(\.|$)/, why: 'scan limits exceeded' },
  { re: /^Heuristics\.Encrypted(\.|$)/, why: 'encrypted content' },
  { re: /^Heuristics\.XZ\.DicSizeLimit$/, why: 'scan limits exceeded' }
]

/** Maps one INSTREAM reply (NUL already stripped) to a verdict; anything unexpected throws. */
export function parseScanReply(reply: string): ScanVerdict {
  if (reply === 'stream: OK') return { result: 'clean' }
  const found = /^stream: (\S+) FOUND$/.exec(reply)
  if (found?.[1]) {
    const signature = found[1]
    const limit = UNSCANNABLE.find((u) => u.re.test(signature))
    if (limit) return { result: 'unscannable', reason: `${limit.why}: ${signature}` }
    return { result: 'infected', signature }
  }
  // clamd's StreamMaxLength: it refuses the rest of the stream and closes.
  if (reply === 'INSTREAM size limit exceeded. ERROR') {
    return { result: 'unscannable', reason: 'stream size limit: larger than clamd StreamMaxLength' }
  }
  if (/^\S.* ERROR$/.test(reply)) throw new ScannerError('engine_error', `clamd error: ${reply}`)
  throw new ScannerError('protocol', `unexpected reply from clamd: ${JSON.stringify(reply.slice(0, 200))}`)
}
