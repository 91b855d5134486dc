/**
 * Text formats have no magic number: these rules name them from the first bytes once file-type
 * found no binary type. `cut` says the sample stops before the end of the file, so its last
 * character and its last line may be incomplete.
 */

/** Tags that make a browser take a document for HTML (WHATWG MIME sniffing, "text/html" patterns). */
const HTML_TAGS = new Set(['html', 'head', 'body', 'script', 'iframe', 'h1', 'div', 'font', 'table', 'a', 'style', 'title', 'b', 'br', 'p'])

/** The sample as text, if it is UTF-8 without NUL bytes; null otherwise. A BOM is dropped. */
export function utf8Text(sample: Uint8Array, cut: boolean): string | null {
  if (sample.includes(0)) return null
  const bytes = cut ? sample.subarray(0, completeLength(sample)) : sample
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch {
    return null
  }
}

/** The sample's length without a multibyte character that the sample cuts in two. */
function completeLength(bytes: Uint8Array): number {
  for (let i = bytes.length - 1; i >= Math.max(0, bytes.length - 4); i--) {
    const byte = bytes[i] ?? 0
    if ((byte & 0xc0) === 0x80) continue // a continuation byte: look for its lead byte
    const length = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1
    return i + length > bytes.length ? i : bytes.length
  }
  return bytes.length
}

/** The type of a text: HTML, SVG or XML when it is markup, CSV when it looks like it, else plain text. */
export function textType(text: string, cut: boolean): string {
  return markupType(text) ?? (looksLikeCsv(text, cut) ? 'text/csv' : 'text/plain')
}

/**
 * HTML, SVG or XML, from how the text starts (after white space): an HTML doctype, or the first
 * element after the prolog (XML declaration, comments, doctype); XML is only what declares itself.
 */
export function markupType(text: string): 'text/html' | 'image/svg+xml' | 'application/xml' | null {
  const start = text.trimStart().toLowerCase()
  if (!start.startsWith('<')) return null
  if (/^<!doctype\s+html[\s>]/.test(start)) return 'text/html'
  const prologless = start.replace(/<\?[\s\S]*?\?>|<!--[\s\S]*?-->|<![^>]*>/g, '').trimStart()
  const root = /^<([a-z][a-z0-9._:-]*)[\s/>]/.exec(prologless)?.[1]?.split(':').pop()
  if (root === 'svg') return 'image/svg+xml'
  if (root === 'html') return 'text/html'
  if (start.startsWith('<?xml')) return 'application/xml'
  if ((root !== undefined && HTML_TAGS.has(root)) || start.startsWith('<!--')) return 'text/html'
  return null
}

/**
 * At least two records of at least two comma-separated fields each, all with the same number of
 * fields (commas and line breaks inside double quotes do not count). A record the sample cuts
 * is left out.
 */
export function looksLikeCsv(text: string, cut: boolean): boolean {
  const counts: number[] = []
  let fields = 1
  let content = 0
  let quoted = false
  for (const c of text) {
    if (c === '"') quoted = !quoted
    else if (quoted) continue
    else if (c === ',') fields++
    else if (c === '\n') {
      if (content > 0 || fields > 1) counts.push(fields)
      fields = 1
      content = 0
      continue
    } else if (c === '\r') continue
    content++
  }
  if (!cut) {
    if (quoted) return false
    if (content > 0 || fields > 1) counts.push(fields)
  }
  const first = counts[0] ?? 0
  return counts.length >= 2 && first >= 2 && counts.every((n) => n === first)
}
