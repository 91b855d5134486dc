/** S3 rejects a whole request for one bad tag, so every store sanitizes tags the same way before writing them. */
export const MAX_TAGS = 10
const MAX_KEY_LENGTH = 128
const MAX_VALUE_LENGTH = 256
// ASCII only: S3 also allows other Unicode letters, but S3-compatible servers (and moto) do not.
const NOT_ALLOWED = /[^A-Za-z0-9 +\-=._:/@]/gu

/** Replaces characters S3 does not allow in tags with `_` and truncates to S3's lengths. */
export function sanitizeTags(tags: Record<string, string>): Record<string, string> {
  const entries = Object.entries(tags)
  // More than 10 tags is a bug in the caller; dropping some silently would lose a verdict.
  if (entries.length > MAX_TAGS) throw new RangeError(`at most ${MAX_TAGS} tags are allowed, got ${entries.length}`)
  const out: Record<string, string> = {}
  for (const [key, value] of entries) {
    const k = clean(key, MAX_KEY_LENGTH)
    if (k === '') throw new RangeError('tag keys must not be empty')
    out[k] = clean(value, MAX_VALUE_LENGTH)
  }
  return out
}

function clean(s: string, max: number): string {
  return s.replace(NOT_ALLOWED, '_').slice(0, max)
}

/** The x-amz-tagging header is a URL query string; encodeURIComponent keeps `+` and spaces unambiguous. */
export function encodeTagging(tags: Record<string, string>): string {
  return Object.entries(tags)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
    .join('&')
}
