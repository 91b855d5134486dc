/** Taken when an upload is admitted; say done once the upload has ended, whatever the outcome. */
export interface AdmissionTicket {
  readonly bytes: number
  /** Frees the ticket's upload slot and bytes; once, however often it is called. */
  done(): void
}

export interface AdmissionOptions {
  maxUploads: number
  memoryBytes: number
  /** The most an upload may buffer in the object store (ObjectStore.putBufferBytes). */
  perUploadBytes: number
}

/**
 * Bounds what uploads may hold across the process: a number of uploads at once and a memory
 * budget. An upload reserves what its store may buffer, or less when its Content-Length says
 * it is smaller, plus the request's own parsing buffers. Past either bound the upload is
 * refused at once (503) instead of the process running out of memory.
 */
export class UploadAdmission {
  /** busboy's and the socket's buffers for one request, whatever the file. */
  static readonly requestOverheadBytes = 128 * 1024
  readonly #options: AdmissionOptions
  #uploads = 0
  #reserved = 0

  constructor(options: AdmissionOptions) {
    this.#options = options
  }

  get uploads(): number {
    return this.#uploads
  }

  get reservedBytes(): number {
    return this.#reserved
  }

  /** A ticket, or null when the process is at either bound. contentLength: the request's, when declared. */
  admit(contentLength: number | null): AdmissionTicket | null {
    const bounded = contentLength === null ? this.#options.perUploadBytes : Math.min(contentLength, this.#options.perUploadBytes)
    const bytes = bounded + UploadAdmission.requestOverheadBytes
    if (this.#uploads >= this.#options.maxUploads) return null
    // One upload is always admitted when nothing else runs, whatever the budget, or it could never run.
    if (this.#uploads > 0 && this.#reserved + bytes > this.#options.memoryBytes) return null
    this.#uploads++
    this.#reserved += bytes
    let done = false
    return {
      bytes,
      done: () => {
        if (done) return
        done = true
        this.#uploads--
        this.#reserved -= bytes
      }
    }
  }
}
