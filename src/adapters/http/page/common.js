// What every console page uses: elements with text (never HTML built from data),
// durations, the error line, and the API under /admin/api with this page's credentials.
'use strict';

function text(tag, value, className) {
  const el = document.createElement(tag);
  el.textContent = value;
  if (className) el.className = className;
  return el;
}

function duration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '–';
  if (seconds < 60) return Math.round(seconds) + ' s';
  if (seconds < 3600) return Math.floor(seconds / 60) + ' min ' + Math.round(seconds % 60) + ' s';
  return Math.floor(seconds / 3600) + ' h ' + Math.floor((seconds % 3600) / 60) + ' min';
}

function showError(message) {
  const el = document.getElementById('error');
  el.textContent = message || '';
  el.hidden = !message;
}

/**
 * The API itself, as the browser may call it: `json` is sent as the body;
 * every change carries the header a form from another site cannot (CSRF).
 * A refusal throws with the API's error body.
 */
async function api(path, options = {}) {
  const method = options.method || 'GET';
  const headers = { ...(options.json !== undefined ? { 'content-type': 'application/json' } : {}), ...(method !== 'GET' ? { 'x-pushq-page': '1' } : {}) };
  const res = await fetch('/admin/api' + path, { method, headers, ...(options.json !== undefined ? { body: JSON.stringify(options.json) } : {}) });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw Object.assign(new Error((body.error && body.error.message) || res.status + ' ' + res.statusText), { status: res.status, body });
  return body;
}
