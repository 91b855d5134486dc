/** Taken when an upload is admitted; say done once the upload has ended, whatever the outcome. */
export interface AdmissionTicket {
  /** Frees the ticket's upload slot; once, however often it is called. */
  done(): void
}

export interface AdmissionOptions {
  maxUploads: number
}

/**
 * Bounds the number of uploads a process takes at once: past it an upload is refused at once (503).
 * Their memory is bounded elsewhere, by the object store's shared part buffers
 * (GW_UPLOAD_MEMORY_BYTES): an upload that finds them all in use waits, it is not refused.
 */
export class UploadAdmission {
  readonly #options: AdmissionOptions
  #uploads = 0

  constructor(options: AdmissionOptions) {
    this.#options = options
  }

  get uploads(): number {
    return this.#uploads
  }

  /** A ticket, or null when the process is at its bound. */
  admit(): AdmissionTicket | null {
    if (this.#uploads >= this.#options.maxUploads) return null
    this.#uploads++
    let done = false
    return {
      done: () => {
        if (done) return
        done = true
        this.#uploads--
      }
    }
  }
}
