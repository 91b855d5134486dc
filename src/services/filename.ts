const maxFilenameBytes = 255

/**
 * The client's filename, made safe to keep as metadata: the last path segment only,
 * no control characters, at most 255 UTF-8 bytes. It never becomes part of an object key.
 */
export function sanitizeFilename(raw: string | undefined | null): string | null {
  if (!raw) return null
  const lastSegment = raw.split(/[/\\]/).pop() ?? ''
  // C0/C1 controls, DEL and Unicode bidi overrides can hide or reorder what a person reads.
  // eslint-disable-next-line no-control-regex -- removing control characters is the point
  const name = lastSegment.normalize('NFC').replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, '').trim()
  if (name === '' || name === '.' || name === '..') return null
  // Cut at a code point, never inside one, once the UTF-8 length would pass the limit.
  let kept = ''
  let bytes = 0
  for (const char of name) {
    bytes += Buffer.byteLength(char, 'utf8')
    if (bytes > maxFilenameBytes) break
    kept += char
  }
  return kept
}

/** The client's declared content type if it looks like one, otherwise application/octet-stream. */
export function sanitizeContentType(raw: string | undefined | null): string {
  const value = (raw ?? '').trim().toLowerCase()
  return /^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/.test(value) ? value : 'application/octet-stream'
}
