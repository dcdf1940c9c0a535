// The create flow: campaign → recipients file → preview → dry run → launch or schedule,
// all through the API (/admin/api, this page's credentials), whose schemas check every
// field: a refusal is shown next to the field it names.
'use strict';
const $ = (selector) => document.getElementById(selector);
let campaignId = null;
let recipientCount = 0;
let maxUploadBytes = 0;

// ---- step 1: the campaign, checked by the API's own schemas ----

function clearFieldErrors() {
  for (const el of document.querySelectorAll('.field-error')) el.remove();
  for (const el of document.querySelectorAll('[aria-invalid]')) {
    el.removeAttribute('aria-invalid');
    el.removeAttribute('aria-describedby');
  }
}

/** A refusal's issues (`body.message.title`, or a path array), each shown after the field it names. */
function showFieldErrors(err) {
  const details = (err.body && err.body.error && err.body.error.details) || {};
  const issues = details.issues || (details.path ? [{ path: ['body', ...details.path].join('.'), message: err.message }] : []);
  let shown = 0;
  for (const issue of issues) {
    const path = String(issue.path).replace(/^body\./, '');
    const field =
      document.querySelector(`#campaign [name="${CSS.escape(path)}"]`) ||
      document.querySelector(`#campaign [name="${CSS.escape(path.split('.').slice(0, 2).join('.'))}"]`) ||
      document.querySelector(`#campaign [name="${CSS.escape(path.split('.')[0])}"]`);
    if (!field) continue;
    field.setAttribute('aria-invalid', 'true');
    const note = document.createElement('p');
    note.className = 'field-error';
    note.dataset.testid = 'field-error';
    note.dataset.field = field.name;
    note.id = 'err-' + field.id;
    field.setAttribute('aria-describedby', note.id);
    note.textContent = issue.message;
    field.insertAdjacentElement('afterend', note);
    shown += 1;
  }
  if (shown === 0) showError(err.message);
}

function quietHours(value) {
  const m = /^\s*(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*(\S+)?\s*$/.exec(value);
  if (!value.trim()) return null;
  if (!m) return { start: value, end: '', timezone: 'UTC' };
  return { start: m[1].padStart(5, '0'), end: m[2].padStart(5, '0'), timezone: m[3] || 'UTC' };
}

function frequencyCap(value) {
  if (!value.trim()) return null;
  const m = /^\s*(\d+)\s*(?:per|\/)\s*(\S+)\s*$/.exec(value);
  return m ? { max: Number(m[1]), per: m[2] } : { max: Number.NaN, per: value };
}

function campaignBody() {
  const f = (name) => document.querySelector(`#campaign [name="${name}"]`).value;
  const body = {
    name: f('name'),
    provider: f('provider'),
    kind: f('kind'),
    priority: f('priority'),
    message: { title: f('message.title'), body: f('message.body') },
    quietHours: quietHours(f('quietHours')),
    suppressionLists: f('suppressionLists')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    frequencyCap: frequencyCap(f('frequencyCap')),
    onRenderError: f('onRenderError'),
  };
  const locales = f('message.locales').trim();
  if (locales) {
    try {
      body.message.locales = JSON.parse(locales);
    } catch {
      body.message.locales = locales;
    }
  }
  return body;
}

$('campaign').addEventListener('submit', async (event) => {
  event.preventDefault();
  clearFieldErrors();
  showError('');
  try {
    const created = await api('/campaigns', { method: 'POST', json: campaignBody() });
    campaignId = created.id;
    for (const el of document.querySelectorAll('#campaign input, #campaign select, #campaign textarea, #campaign button')) el.disabled = true;
    document.querySelector('[data-step="2"]').hidden = false;
    $('campaign').dataset.id = campaignId;
    $('file').focus();
  } catch (err) {
    showFieldErrors(err);
  }
});

// ---- step 2: the file, counted and hashed here, then streamed ----

/** SHA-256, fed chunk by chunk (WebCrypto only hashes a whole buffer: a big file is never held whole). */
class Sha256 {
  constructor() {
    this.h = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    this.buffer = new Uint8Array(64);
    this.filled = 0;
    this.length = 0;
    this.w = new Uint32Array(64);
  }
  update(bytes) {
    this.length += bytes.length;
    let i = 0;
    while (i < bytes.length) {
      const take = Math.min(64 - this.filled, bytes.length - i);
      this.buffer.set(bytes.subarray(i, i + take), this.filled);
      this.filled += take;
      i += take;
      if (this.filled === 64) {
        this.block(this.buffer);
        this.filled = 0;
      }
    }
  }
  block(b) {
    const w = this.w;
    for (let t = 0; t < 16; t++) w[t] = (b[4 * t] << 24) | (b[4 * t + 1] << 16) | (b[4 * t + 2] << 8) | b[4 * t + 3];
    for (let t = 16; t < 64; t++) {
      const x = w[t - 15];
      const y = w[t - 2];
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      w[t] = (w[t - 16] + s0 + w[t - 7] + s1) | 0;
    }
    let [a, bb, c, d, e, f, g, h] = this.h;
    for (let t = 0; t < 64; t++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const ch = (e & f) ^ (~e & g);
      const t1 = (h + S1 + ch + K[t] + w[t]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const maj = (a & bb) ^ (a & c) ^ (bb & c);
      const t2 = (S0 + maj) | 0;
      h = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = bb;
      bb = a;
      a = (t1 + t2) | 0;
    }
    const H = this.h;
    H[0] = (H[0] + a) | 0;
    H[1] = (H[1] + bb) | 0;
    H[2] = (H[2] + c) | 0;
    H[3] = (H[3] + d) | 0;
    H[4] = (H[4] + e) | 0;
    H[5] = (H[5] + f) | 0;
    H[6] = (H[6] + g) | 0;
    H[7] = (H[7] + h) | 0;
  }
  hex() {
    const bits = this.length * 8;
    const pad = new Uint8Array((this.filled < 56 ? 56 : 120) - this.filled + 8);
    pad[0] = 0x80;
    const view = new DataView(pad.buffer);
    view.setUint32(pad.length - 8, Math.floor(bits / 2 ** 32));
    view.setUint32(pad.length - 4, bits >>> 0);
    const length = this.length;
    this.update(pad);
    this.length = length;
    return this.h.map((x) => (x >>> 0).toString(16).padStart(8, '0')).join('');
  }
}
const K = Uint32Array.from([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74,
  0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d,
  0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e,
  0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5,
  0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/**
 * Rows as the server counts them (src/adapters/http/upload-source.ts). CSV,
 * as csv-parse reads it: the record delimiter is the first line break seen
 * outside quotes (\r\n, \n or \r), a record of zero bytes is skipped, a BOM
 * is not content, and the header is not a row. NDJSON: lines split at \n,
 * blank ones (spaces, tabs, \r) skipped.
 */
class RowCounter {
  constructor(csv) {
    this.csv = csv;
    this.rows = 0;
    this.quoted = false;
    this.delimiter = null;
    this.pendingCR = false;
    this.content = false;
    this.offset = 0;
  }
  end() {
    if (this.content) this.rows += 1;
    this.content = false;
  }
  byte(b) {
    const at = this.offset++;
    // The BOM (EF BB BF) at the very start is not content.
    if (at < 3 && b === [0xef, 0xbb, 0xbf][at] && !this.content && this.rows === 0) return;
    if (!this.csv) {
      if (b === 0x0a) this.end();
      else if (b !== 0x20 && b !== 0x09 && b !== 0x0d) this.content = true;
      return;
    }
    if (this.pendingCR) {
      this.pendingCR = false;
      if (this.delimiter === null) {
        // The first line break is a \r: \r\n if \n follows, else \r alone is the delimiter.
        this.delimiter = b === 0x0a ? 'crlf' : 'cr';
        this.end();
        if (b === 0x0a) return;
      } else if (b === 0x0a) return this.end();
      // (delimiter \r\n) a \r not followed by \n is content.
      else this.content = true;
    }
    if (b === 0x22) this.quoted = !this.quoted;
    if (!this.quoted) {
      if (this.delimiter === null && b === 0x0d) return void (this.pendingCR = true);
      if (this.delimiter === null && b === 0x0a) this.delimiter = 'lf';
      if ((this.delimiter === 'lf' && b === 0x0a) || (this.delimiter === 'cr' && b === 0x0d)) return this.end();
      if (this.delimiter === 'crlf' && b === 0x0d) return void (this.pendingCR = true);
    }
    this.content = true;
  }
  feed(bytes) {
    for (let i = 0; i < bytes.length; i++) this.byte(bytes[i]);
  }
  finish() {
    if (this.pendingCR) {
      this.pendingCR = false;
      // A last \r: the delimiter when it is the first line break; with \r\n records, content.
      if (this.delimiter === 'crlf') this.content = true;
      else this.end();
    }
    this.end();
    return this.csv ? Math.max(0, this.rows - 1) : this.rows;
  }
}

async function countAndHash(file, csv, onProgress) {
  const hash = new Sha256();
  const counter = new RowCounter(csv);
  let read = 0;
  const reader = file.stream().getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    hash.update(value);
    counter.feed(value);
    read += value.length;
    onProgress(read);
  }
  return { rows: counter.finish(), sha256: hash.hex() };
}

function rateAndEta(done, total, startedAt) {
  const seconds = (performance.now() - startedAt) / 1000;
  const mbps = done / 1e6 / Math.max(seconds, 0.001);
  const eta = done > 0 ? ((total - done) / done) * seconds : Infinity;
  return `${mbps.toFixed(1)} MB/s, ${Number.isFinite(eta) ? Math.ceil(eta) + ' s left' : '…'}`;
}

function upload(file, type, rows, sha256) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', '/admin/api/campaigns/' + encodeURIComponent(campaignId) + '/recipients');
    xhr.setRequestHeader('content-type', type);
    xhr.setRequestHeader('x-recipient-count', String(rows));
    xhr.setRequestHeader('x-content-sha256', sha256);
    xhr.setRequestHeader('x-pushq-page', '1');
    const started = performance.now();
    xhr.upload.onprogress = (e) => {
      if (!e.lengthComputable) return;
      $('upload-progress').value = e.loaded / e.total;
      $('upload-status').textContent =
        `uploading: ${(e.loaded / 1e6).toFixed(1)} of ${(e.total / 1e6).toFixed(1)} MB · ${rateAndEta(e.loaded, e.total, started)}`;
    };
    xhr.onload = () => {
      let body = {};
      try {
        body = JSON.parse(xhr.responseText || '{}');
      } catch {
        // Not ours (a proxy's page): the status says enough.
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(Object.assign(new Error((body.error && body.error.message) || 'upload refused: ' + xhr.status), { body }));
    };
    xhr.onerror = () => reject(new Error('the upload was cut off'));
    xhr.send(file);
  });
}

$('file').addEventListener('change', async () => {
  const file = $('file').files[0];
  if (!file || !campaignId) return;
  if (maxUploadBytes && file.size > maxUploadBytes) {
    $('upload-status').textContent =
      `refused before sending: ${(file.size / 1e6).toFixed(1)} MB is more than the server takes (${(maxUploadBytes / 1e6).toFixed(1)} MB, MAX_UPLOAD_BYTES)`;
    return;
  }
  const csv = !/\.(ndjson|jsonl)$/i.test(file.name) && file.type !== 'application/x-ndjson';
  const type = csv ? 'text/csv' : 'application/x-ndjson';
  const progress = $('upload-progress');
  progress.hidden = false;
  showError('');
  try {
    const started = performance.now();
    const { rows, sha256 } = await countAndHash(file, csv, (read) => {
      progress.value = read / Math.max(1, file.size);
      $('upload-status').textContent = `checking: ${(read / 1e6).toFixed(1)} MB · ${rateAndEta(read, file.size, started)}`;
    });
    $('upload-status').dataset.rows = String(rows);
    $('upload-status').dataset.sha256 = sha256;
    const answer = await upload(file, type, rows, sha256);
    const s = answer.recipients || answer.ingest || answer;
    recipientCount = (answer.campaign && answer.campaign.recipientCount) || s.accepted || 0;
    $('upload-status').textContent = `${rows} rows, SHA-256 ${sha256.slice(0, 12)}…: accepted ${s.accepted}, duplicate ${s.duplicate}, invalid ${s.invalid}`;
    $('upload-result').textContent = `upload done: ${s.accepted} recipients accepted`;
    $('upload-status').dataset.accepted = String(s.accepted);
    document.querySelector('[data-step="3"]').hidden = false;
    document.querySelector('[data-step="4"]').hidden = false;
  } catch (err) {
    $('upload-status').textContent = 'refused, nothing was changed: ' + err.message;
    $('upload-result').textContent = $('upload-status').textContent;
  }
});

// ---- step 3: preview ----

$('preview-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const typed = $('p-json').value.trim();
  let input;
  try {
    input = typed ? { recipient: JSON.parse(typed) } : { recipientId: $('p-id').value.trim() };
  } catch {
    $('preview').textContent = 'the recipient is not JSON';
    $('preview').hidden = false;
    return;
  }
  try {
    const p = await api('/campaigns/' + encodeURIComponent(campaignId) + '/preview', { method: 'POST', json: input });
    $('preview').textContent = p.rendered
      ? `${p.message.title}\n${p.message.body}` + (p.tooLong ? `\n(too long: ${p.tooLong})` : '')
      : `does not render: ${p.error}`;
  } catch (err) {
    $('preview').textContent = err.message;
  }
  $('preview').hidden = false;
});

// ---- step 4: the schedule's next occurrences as the server works them out, dry run, launch ----

let nextTimer = null;
function showNextRuns() {
  clearTimeout(nextTimer);
  nextTimer = setTimeout(async () => {
    const when = $('s-kind').value;
    const zone = $('s-zone').value.trim() || 'UTC';
    const out = $('s-next');
    if (when === 'now') {
      out.textContent = '';
      return;
    }
    const query =
      when === 'at'
        ? '?at=' + encodeURIComponent($('s-at').value ? new Date($('s-at').value).toISOString() : '')
        : '?cron=' + encodeURIComponent($('s-cron').value) + '&timezone=' + encodeURIComponent(zone);
    try {
      const view = await api('/schedules/next' + query);
      const format = new Intl.DateTimeFormat('en-GB', { timeZone: zone, dateStyle: 'medium', timeStyle: 'short' });
      out.textContent = 'next: ' + view.next.map((at) => format.format(new Date(at))).join(' · ') + ` (${zone})`;
      out.dataset.count = String(view.next.length);
    } catch (err) {
      out.textContent = err.message;
      out.dataset.count = '0';
    }
  }, 300);
}
for (const field of ['s-kind', 's-at', 's-cron', 's-zone']) $(field).addEventListener('input', showNextRuns);

// launch or schedule

$('dry-run').addEventListener('click', async () => {
  try {
    const r = await api('/campaigns/' + encodeURIComponent(campaignId) + '/dry-run', { method: 'POST', json: {} });
    $('dry-out').textContent = r.ok
      ? `all ${r.recipients} render and fit`
      : `${r.failed} of ${r.recipients} would not get a whole message: ` +
        [
          ...r.missingVariables.map((m) => `${m.count} without ${m.variable}`),
          ...r.tooLong.map((t) => `${t.count} too long`),
          ...r.errors.map((e) => `${e.count}: ${e.error}`),
        ].join('; ');
    $('dry-out').dataset.ok = String(r.ok);
  } catch (err) {
    $('dry-out').textContent = err.message;
  }
  $('dry-out').hidden = false;
});

$('launch').addEventListener('click', async () => {
  const when = $('s-kind').value;
  const zone = $('s-zone').value.trim() || 'UTC';
  const what = when === 'now' ? 'now' : when === 'at' ? `at ${$('s-at').value} (this browser's local time)` : `on "${$('s-cron').value}" (${zone})`;
  // Naming how many people, before anything is sent.
  if (!confirm(`Send to ${recipientCount.toLocaleString('en')} recipients ${what}?`)) return;
  try {
    if (when === 'now') await api('/campaigns/' + encodeURIComponent(campaignId) + '/launch', { method: 'POST', json: {} });
    else {
      const body = when === 'at' ? { at: new Date($('s-at').value).toISOString() } : { cron: $('s-cron').value, timezone: zone };
      await api('/campaigns/' + encodeURIComponent(campaignId) + '/schedule', { method: 'POST', json: body });
    }
    location.href = '/admin/campaigns/' + encodeURIComponent(campaignId);
  } catch (err) {
    showError(err.message);
  }
});

(async () => {
  const me = await (await fetch('/admin/campaigns/role')).json();
  const role = me.role;
  maxUploadBytes = me.maxUploadBytes || 0;
  $('role').textContent = role === 'admin' ? 'admin' : 'viewer (read only): a viewer cannot create campaigns';
  if (role !== 'admin') for (const el of document.querySelectorAll('main button, main input, main select, main textarea')) el.disabled = true;
  try {
    const providers = await api('/providers');
    $('f-provider').replaceChildren(
      ...(providers.items || providers).map((p) => {
        const option = document.createElement('option');
        option.value = option.textContent = p.name;
        return option;
      }),
    );
  } catch (err) {
    showError('cannot list providers: ' + err.message);
  }
  for (const zone of Intl.supportedValuesOf ? Intl.supportedValuesOf('timeZone') : ['UTC', 'Asia/Seoul']) {
    const option = document.createElement('option');
    option.value = zone;
    $('zones').append(option);
  }
})();

// What the console's test checks against Node's SHA-256 and the server's row count.
globalThis.pushqUpload = { Sha256, RowCounter };
