import { randomBytes } from 'node:crypto'

/** A new upload id, whichever way the upload arrives (multipart, tus, adoption): 128 random bits in hex. */
export function newUploadId(): string {
  return randomBytes(16).toString('hex')
}
