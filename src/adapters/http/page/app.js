// The campaign progress page: polls the API (through /admin/campaigns, under the
// same browser credentials as this page) and draws each campaign's latest run.
'use strict';
const previous = new Map();
const rows = document.getElementById('campaigns');
let role = 'viewer';

async function act(id, action) {
  // The header a cross-site form cannot send: the server refuses page actions without it (CSRF).
  const res = await fetch('/admin/campaigns/' + encodeURIComponent(id) + '/' + action, { method: 'POST', headers: { 'x-pushq-page': '1' } });
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    showError((body.error && body.error.message) || res.statusText);
  }
  await refresh();
}

function render(campaign, now) {
  const c = campaign.counts;
  const done = c.sent + c.failed + c.unknown + c.skipped;
  const before = previous.get(campaign.id);
  let rate = before && before.rate !== undefined ? before.rate : 0;
  if (before && now > before.at && done !== before.done) rate = ((done - before.done) * 1000) / (now - before.at);
  if (campaign.status !== 'running') rate = 0;
  previous.set(campaign.id, { at: now, done, rate });

  const tr = document.createElement('tr');
  tr.dataset.testid = 'campaign';
  tr.dataset.id = campaign.id;
  tr.dataset.status = campaign.status;
  const name = document.createElement('td');
  const link = text('a', campaign.name);
  link.href = '/admin/campaigns/' + encodeURIComponent(campaign.id);
  const title = document.createElement('div');
  title.append(link);
  name.append(title, text('div', campaign.id, 'id'));
  tr.append(name, text('td', campaign.status, 'status-' + campaign.status));
  const barCell = document.createElement('td');
  const bar = document.createElement('div');
  bar.className = 'bar';
  bar.dataset.testid = 'bar';
  bar.dataset.done = String(done);
  for (const part of ['sent', 'failed', 'unknown', 'skipped']) {
    const span = document.createElement('span');
    span.className = part;
    span.style.width = (c.total ? (100 * c[part]) / c.total : 0) + '%';
    bar.append(span);
  }
  barCell.append(bar);
  tr.append(barCell);
  const reasons = Object.entries(c.skippedBy || {})
    .map(([reason, n]) => reason + ' ' + n)
    .join(', ');
  const by = c.deferredBy || {};
  const why = [by['quiet-hours'] ? `quiet hours ${by['quiet-hours']}` : '', by['local-time'] ? `local time ${by['local-time']}` : '']
    .filter(Boolean)
    .join(', ');
  const held = c.deferred > 0 ? ` · deferred ${c.deferred} (${why || 'quiet hours'}, until ${c.deferredUntil})` : '';
  const pace = c.pace ? ` · pace ${c.pace}/s` : '';
  const countsCell = text(
    'td',
    `${done}/${c.total} · sent ${c.sent} · failed ${c.failed} · unknown ${c.unknown} · skipped ${c.skipped}${reasons ? ' (' + reasons + ')' : ''}${held}${pace}`,
  );
  const run = campaign.latestRun;
  if (run && run.waves && run.waves.length > 0) {
    // Local-time waves, earliest first: each due instant (UTC) and the recipients deferred to it; ✓ once it has come.
    const waves = text(
      'div',
      'waves: ' + run.waves.map((w) => `${w.at.slice(5, 16).replace('T', ' ')}Z ${w.recipients}${w.due ? ' ✓' : ''}`).join(' · '),
      'waves',
    );
    waves.dataset.testid = 'waves';
    countsCell.append(waves);
  }
  if (run && run.expiresAt) countsCell.append(text('div', `deadline ${run.expiresAt}`, 'deadline'));
  tr.append(countsCell);
  tr.append(text('td', rate > 0 ? rate.toFixed(0) + '/s' : '–'));
  // Deferred recipients wait for their window, not for throughput: no ETA from the rate for them.
  tr.append(text('td', rate > 0 ? duration((c.pending - (c.deferred || 0)) / rate) : '–'));
  const schedule = campaign.schedule;
  tr.append(
    text(
      'td',
      schedule
        ? (schedule.kind === 'cron' ? schedule.cron + ' (' + schedule.timezone + ')' : 'at ' + schedule.at) +
            (schedule.nextRunAt ? ' · next ' + schedule.nextRunAt : '')
        : '–',
    ),
  );
  const actions = document.createElement('td');
  if (role === 'admin') {
    const allowed = { running: ['pause', 'cancel'], paused: ['resume', 'cancel'], scheduled: ['pause', 'cancel'], draft: ['cancel'] }[campaign.status] || [];
    for (const action of allowed) {
      const button = text('button', action);
      button.dataset.testid = action;
      button.addEventListener('click', () => act(campaign.id, action));
      actions.append(button);
    }
  }
  tr.append(actions);
  return tr;
}

function renderWebhook(webhook) {
  const tr = document.createElement('tr');
  tr.dataset.name = webhook.name;
  tr.append(
    text('td', webhook.name + (webhook.source === 'file' ? ' (file)' : '')),
    text('td', webhook.events.join(', ')),
    text('td', webhook.enabled ? 'enabled' : 'disabled: ' + ((webhook.disabled && webhook.disabled.reason) || ''), webhook.enabled ? '' : 'failed'),
  );
  const dead = text('td', String(webhook.deadLetters), webhook.deadLetters > 0 ? 'failed' : '');
  dead.dataset.testid = 'dead-letters';
  tr.append(dead);
  return tr;
}

async function refresh() {
  try {
    const res = await fetch('/admin/campaigns/data');
    if (!res.ok) throw new Error(res.status + ' ' + res.statusText);
    const data = await res.json();
    role = data.role;
    document.getElementById('role').textContent = role === 'admin' ? 'signed in as admin' : 'signed in as viewer (read only)';
    const now = Date.now();
    rows.replaceChildren(...data.campaigns.map((campaign) => render(campaign, now)));
    const webhooks = data.webhooks || [];
    document.getElementById('webhooks-section').hidden = webhooks.length === 0;
    document.getElementById('webhooks').replaceChildren(...webhooks.map(renderWebhook));
  } catch (err) {
    showError('cannot load campaigns: ' + err.message);
  }
}

refresh();
setInterval(refresh, 1000);
