/**
 * MIME types and the lists that allow them (GW_ALLOWED_TYPES, a token's `types`): exact types
 * (`image/png`) and wildcards (`image/*`, `*\/*`). Pure, so configuration, tokens and ingest
 * judge a type the same way.
 */

/** A list entry: `type/subtype`, `type/*` or `*\/*`, lower case. */
const MEDIA_RANGE = /^(?:[a-z0-9][a-z0-9!#$&^_.+-]*\/(?:[a-z0-9][a-z0-9!#$&^_.+-]*|\*)|\*\/\*)$/

/** JavaScript and Flash: a browser runs them when they are served with their own type. */
const SCRIPT_TYPES = new Set([
  'text/javascript',
  'application/javascript',
  'application/x-javascript',
  'application/ecmascript',
  'text/ecmascript',
  'application/x-shockwave-flash'
])

/** The type without parameters, lower case: `Text/HTML; charset=utf-8` is `text/html`. */
export function normalizeType(type: string): string {
  return (type.split(';')[0] ?? '').trim().toLowerCase()
}

/** Whether `entry` is a valid list entry (`type/subtype`, `type/*` or `*\/*`, any case). */
export function isMediaRange(entry: string): boolean {
  return MEDIA_RANGE.test(entry.trim().toLowerCase())
}

/**
 * Types a browser renders actively (runs scripts in, or hands to a renderer that can): HTML,
 * XHTML, SVG, every XML type (an XML document may be XHTML or SVG, or pull an XSLT), JavaScript
 * and Flash. No wildcard covers them, and they are served as attachments.
 */
export function isActiveType(type: string): boolean {
  const t = normalizeType(type)
  return t === 'text/html' || t === 'text/xml' || t === 'application/xml' || t === 'text/xsl' || t.endsWith('+xml') || SCRIPT_TYPES.has(t)
}

/** Whether one list entry allows a detected type: an exact match, or a wildcard over a type that is not active. */
export function entryAllows(entry: string, type: string): boolean {
  const e = normalizeType(entry)
  const t = normalizeType(type)
  if (e === t) return true
  if (isActiveType(t)) return false
  if (e === '*/*') return true
  return e.endsWith('/*') && t.startsWith(e.slice(0, -1))
}

/** Whether a list allows a detected type; an empty list allows any. */
export function listAllows(list: readonly string[], type: string): boolean {
  return list.length === 0 || list.some((entry) => entryAllows(entry, type))
}

/**
 * Whether every entry of `types` (a token's) lies within `allowed` (GW_ALLOWED_TYPES; empty: any):
 * an exact type must be allowed by the list, a wildcard must be in it or under `*\/*`.
 */
export function withinAllowed(types: readonly string[], allowed: readonly string[]): boolean {
  if (allowed.length === 0) return true
  return types.every((raw) => {
    const type = normalizeType(raw)
    if (!type.endsWith('/*')) return listAllows(allowed, type)
    return allowed.some((entry) => {
      const e = normalizeType(entry)
      return e === type || e === '*/*'
    })
  })
}
