// The demo page: Uppy's Dashboard sends each file over tus (/v1/tus) with an upload token from
// POST /demo/token, then the page follows the file's scan status by long-polling
// GET /v1/uploads/:id?wait=25 with If-None-Match. Plain script, no build step: Uppy's bundled
// build (uppy.min.js) defines globalThis.Uppy.
'use strict'

const { Uppy, Dashboard, Tus } = globalThis.Uppy
const finalStatuses = new Set(['clean', 'infected', 'unscannable', 'rejected', 'failed'])
/** Uppy file id → the token that created its upload: its later requests and status reads use it. */
const tokens = new Map()
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** A new token for one upload. In an application, your backend mints it for its signed-in user. */
async function mintToken() {
  const res = await fetch('/demo/token', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  if (!res.ok) throw new Error(`POST /demo/token answered ${res.status}`)
  return res.json()
}

const uppy = new Uppy({ autoProceed: false })
  .use(Dashboard, { inline: true, target: '#dashboard', height: 320, showProgressDetails: true, proudlyDisplayPoweredByUppy: false })
  .use(Tus, {
    endpoint: '/v1/tus',
    retryDelays: [0, 1000, 3000],
    // A finished upload is not offered for resuming: the same file dropped again is a new upload.
    removeFingerprintOnSuccess: true,
    // Each upload is created with a fresh token; its PATCH and HEAD requests keep that token, which
    // the gateway accepts for its own upload for GW_TOKEN_READ_TTL, even once it has expired.
    async onBeforeRequest(req, file) {
      if (req.getMethod() === 'POST' || !tokens.has(file.id)) tokens.set(file.id, await mintToken())
      req.setHeader('Authorization', `Bearer ${tokens.get(file.id).token}`)
    }
  })

/** The list item of a file: name, progress bar, status (data-upload-status) and details. */
function row(file) {
  let item = document.querySelector(`#uploads li[data-file-id="${CSS.escape(file.id)}"]`)
  if (item) return item
  item = document.createElement('li')
  item.dataset.fileId = file.id
  item.dataset.fileName = file.name
  const name = Object.assign(document.createElement('span'), { className: 'name', textContent: file.name, title: file.name })
  const progress = Object.assign(document.createElement('progress'), { max: 100, value: 0 })
  const status = Object.assign(document.createElement('span'), { className: 'status' })
  const detail = Object.assign(document.createElement('span'), { className: 'detail' })
  item.append(name, progress, status, detail)
  document.querySelector('#uploads').append(item)
  document.querySelector('#empty').hidden = true
  return item
}

function show(file, status, detail = '') {
  const item = row(file)
  item.querySelector('.status').dataset.uploadStatus = status
  item.querySelector('.status').textContent = status
  item.querySelector('.detail').textContent = detail
}

/** What the gateway said about a finished scan, in a few words. */
function detailOf(view) {
  const verdict = view.verdict || {}
  if (view.status === 'infected') return `signature: ${verdict.signature}`
  if (view.status === 'clean') return `${view.size} bytes, sha256 ${view.sha256.slice(0, 16)}…`
  return verdict.reason || ''
}

/**
 * Follows an upload until its verdict. Each request waits up to 25 s on the gateway for a status
 * other than the one we have (its ETag). A gateway that answers at once anyway (no long-poll, or
 * it refuses `wait`) is asked again a second later, never in a tight loop.
 */
async function follow(file, id) {
  const token = tokens.get(file.id).token
  let etag = null
  let wait = true
  for (let failures = 0; failures < 10; ) {
    const started = Date.now()
    const headers = { authorization: `Bearer ${token}`, ...(etag ? { 'if-none-match': etag } : {}) }
    const res = await fetch(`/v1/uploads/${id}${wait ? '?wait=25' : ''}`, { headers }).catch(() => null)
    if (res && res.status === 200) {
      failures = 0
      etag = res.headers.get('etag')
      const view = await res.json()
      show(file, view.status, detailOf(view))
      if (finalStatuses.has(view.status)) return
      continue
    }
    if (res && res.status === 400 && wait) {
      wait = false
      continue
    }
    if (res && res.status === 429) await sleep(1000 * Number(res.headers.get('retry-after') || 1))
    if (!res || (res.status !== 304 && res.status !== 429)) failures++
    await sleep(Math.max(0, 1000 - (Date.now() - started)))
  }
  show(file, 'error', 'the status could not be read; reload the page to try again')
}

/** The gateway's upload id: from Upload-Status-Url on the last response, else the tus URL (same id). */
function uploadIdOf(response) {
  const url = response.body?.xhr?.getResponseHeader('Upload-Status-Url') || response.uploadURL || ''
  return url.split('?')[0].split('/').filter(Boolean).pop()
}

uppy.on('upload-progress', (file, progress) => {
  const item = row(file)
  if (progress.bytesTotal) item.querySelector('progress').value = Math.round((100 * progress.bytesUploaded) / progress.bytesTotal)
  if (!item.querySelector('.status').dataset.uploadStatus) show(file, 'uploading')
})
uppy.on('upload-success', (file, response) => {
  row(file).querySelector('progress').value = 100
  const id = uploadIdOf(response)
  row(file).dataset.uploadId = id
  show(file, 'pending')
  follow(file, id)
})
uppy.on('upload-error', (file, error, response) => {
  let detail = error.message
  try {
    detail = JSON.parse(response.body.xhr.responseText).error.message
  } catch {
    // Not the gateway's error shape (a network error): keep Uppy's message.
  }
  show(file, 'error', detail)
})
