// One campaign, live: charts of its sends at the provider (the workers' per-second
// series), its counts and ETA, runs, failures, schedule, provider and dead letters.
// Everything through /admin/api: the API itself, under this page's credentials.
'use strict';
const id = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop());
const $ = (selector) => document.getElementById(selector);
const OUTCOMES = ['sent', 'failed', 'unknown', 'retry', 'requeue'];
const COLORS = { sent: '#2e7d32', failed: '#c62828', unknown: '#ef6c00', retry: '#6a1b9a', requeue: '#00838f', skipped: '#757575', deferred: '#1565c0' };
let role = 'viewer';
let campaign = null;
let failuresCursor = null;
let failuresShownFor = null;
let paged = false;
let rateChart = null;
let totalChart = null;
let tps = null;

const number = (n) => Number(n).toLocaleString('en');
const path = (...parts) => parts.map(encodeURIComponent).join('/');

let controlsFor = null;
function controls() {
  const box = $('controls');
  // Rebuilt only when what they offer changes: keyboard focus stays where it is between refreshes.
  const key = role + '|' + (campaign ? campaign.status : '');
  if (key === controlsFor) return;
  controlsFor = key;
  box.replaceChildren();
  if (role !== 'admin' || !campaign) return;
  const actions =
    {
      draft: ['launch', 'cancel'],
      scheduled: ['pause', 'cancel'],
      running: ['pause', 'cancel'],
      paused: ['resume', 'cancel'],
    }[campaign.status] || [];
  for (const action of actions) {
    const button = text('button', action);
    button.type = 'button';
    button.dataset.testid = action;
    button.addEventListener('click', async () => {
      const c = campaign.counts;
      const open = c.pending;
      // Naming what it does to how many people, before it does it.
      const ask =
        action === 'launch'
          ? `Launch "${campaign.name}" now to ${number(campaign.recipientCount)} recipients?`
          : action === 'cancel'
            ? `Cancel "${campaign.name}"? ${number(open)} of ${number(c.total || campaign.recipientCount)} recipients have not been sent and will not be.`
            : null;
      if (ask && !confirm(ask)) return;
      try {
        await api('/campaigns/' + path(id) + '/' + action, { method: 'POST' });
        showError('');
      } catch (err) {
        showError(err.message);
      }
      // The next refresh shows the new state and its controls.
      controlsFor = null;
    });
    box.append(button);
  }
}

/** Seconds from the first point to the server's now, with zeros where no worker reported. */
function dense(points, serverNow) {
  // The last two seconds are still being counted (workers report once a second).
  const now = (serverNow || Math.floor(Date.now() / 1000)) - 2;
  const first = points.length > 0 ? Math.min(now, Math.max(points[0].at, now - 3600)) : now - 60;
  const byAt = new Map(points.map((p) => [p.at, p.counts]));
  const rows = [];
  for (let at = first; at <= now; at += 1) rows.push([at, byAt.get(at) || null]);
  return rows;
}

function drawCharts(points, serverNow) {
  const rows = dense(points, serverNow);
  const xs = rows.map(([at]) => at);
  const per = (o) => rows.map(([, c]) => (c ? c[o] : 0));
  const pace = campaign && campaign.counts.pace ? campaign.counts.pace : null;
  const rateData = [xs, ...OUTCOMES.map(per), xs.map(() => tps), xs.map(() => pace)];
  // Cumulative over the window, ending at the ledger's counts (the series only holds the last hour).
  const c = campaign ? campaign.counts : {};
  const sums = { sent: 0, failed: 0, unknown: 0, skipped: 0, deferred: 0 };
  for (const [, counts] of rows) if (counts) for (const k of Object.keys(sums)) sums[k] += counts[k] || 0;
  const totals = Object.keys(sums).map((k) => {
    let acc = k === 'deferred' ? Math.max(0, (c.deferred || 0) - sums.deferred) : Math.max(0, (c[k] || 0) - sums[k]);
    return rows.map(([, counts]) => (acc += counts ? counts[k] || 0 : 0));
  });
  const width = Math.max(320, Math.min(1200, $('rate-chart').clientWidth || document.body.clientWidth - 40));
  if (!rateChart) {
    rateChart = new uPlot(
      {
        width,
        height: 240,
        scales: { x: { time: true } },
        series: [
          {},
          ...OUTCOMES.map((o) => ({ label: o, stroke: COLORS[o], width: 1.5 })),
          { label: 'provider tps', stroke: '#000', dash: [6, 4], width: 1 },
          { label: 'pace', stroke: '#1565c0', dash: [2, 3], width: 1 },
        ],
        axes: [{}, { label: 'per second' }],
      },
      rateData,
      $('rate-chart'),
    );
    totalChart = new uPlot(
      {
        width,
        height: 200,
        scales: { x: { time: true } },
        series: [{}, ...Object.keys(sums).map((k) => ({ label: k, stroke: COLORS[k], width: 1.5 }))],
        axes: [{}, { label: 'recipients' }],
      },
      [xs, ...totals],
      $('total-chart'),
    );
  } else {
    rateChart.setData(rateData);
    totalChart.setData([xs, ...totals]);
  }
  const chart = $('rate-chart');
  chart.dataset.points = String(points.length);
  chart.dataset.sent = String(points.reduce((n, p) => n + p.counts.sent, 0));
  return rows;
}

function showCounts(rows) {
  const c = campaign.counts;
  const done = c.sent + c.failed + c.unknown + c.skipped;
  const reasons = Object.entries(c.skippedBy || {})
    .map(([r, n]) => `${r} ${number(n)}`)
    .join(', ');
  const counts = $('counts');
  counts.textContent =
    `${number(done)} of ${number(c.total)} final · sent ${number(c.sent)} · failed ${number(c.failed)} · unknown ${number(c.unknown)} · skipped ${number(c.skipped)}` +
    (reasons ? ` (${reasons})` : '') +
    ` · pending ${number(c.pending)}` +
    (c.deferred ? ` · deferred ${number(c.deferred)} until ${c.deferredUntil}` : '') +
    (c.delivered !== undefined ? ` · delivered ${number(c.delivered)} · undelivered ${number(c.undelivered)}` : '');
  counts.dataset.status = campaign.status;
  counts.dataset.done = String(done);
  // The ETA's basis: the last 10 s of outcomes at the provider; deferred recipients wait for their window instead.
  const recent = rows.slice(-10);
  const rate = recent.reduce((n, [, k]) => n + (k ? k.sent + k.failed + k.unknown : 0), 0) / Math.max(1, recent.length);
  const waiting = c.pending - (c.deferred || 0);
  $('eta').textContent =
    campaign.status !== 'running'
      ? `ETA: – (${campaign.status})`
      : rate > 0
        ? `ETA ${duration(waiting / rate)} for ${number(waiting)} pending at ${rate.toFixed(0)}/s (the last 10 s)` +
          (c.deferred ? `; ${number(c.deferred)} deferred until ${c.deferredUntil}` : '')
        : c.deferred
          ? `ETA: waiting — ${number(c.deferred)} deferred until ${c.deferredUntil}`
          : 'ETA: – (nothing sent in the last 10 s)';
  const legs = c.byLeg;
  $('legs').hidden = !legs;
  if (legs)
    $('legs').textContent =
      'by leg: ' + legs.map((l) => `leg ${l.leg} entered ${number(l.entered)}, sent ${number(l.sent)}, moved on ${number(l.movedOn)}`).join(' · ');
}

function showSchedule() {
  const s = campaign.schedule;
  const list = $('next-runs');
  list.replaceChildren();
  if (!s) {
    $('schedule').textContent = '–';
    return;
  }
  const zone = s.timezone || 'UTC';
  $('schedule').textContent = s.kind === 'cron' ? `cron ${s.cron} (${zone})` : `once at ${s.at}`;
  const format = new Intl.DateTimeFormat('en-GB', { timeZone: zone, dateStyle: 'medium', timeStyle: 'short' });
  for (const at of s.next || []) list.append(text('li', `${format.format(new Date(at))} ${zone}`));
}

function showRuns(runs) {
  $('runs').replaceChildren(
    ...runs.map((run) => {
      const tr = document.createElement('tr');
      const c = run.counts;
      const links = document.createElement('td');
      for (const format of ['csv', 'ndjson']) {
        const a = text('a', format);
        a.href = '/admin/api/campaigns/' + path(id) + '/runs/' + path(run.id) + '/results?format=' + format;
        links.append(a, ' ');
      }
      tr.append(
        text('td', run.id),
        text('td', run.status),
        text('td', run.trigger),
        text('td', run.createdAt),
        text('td', `sent ${number(c.sent)} · failed ${number(c.failed)} · unknown ${number(c.unknown)} · skipped ${number(c.skipped)} / ${number(c.total)}`),
        links,
      );
      return tr;
    }),
  );
}

function failureRow(f) {
  const tr = document.createElement('tr');
  tr.append(
    text('td', f.recipientId),
    text('td', f.state, f.state),
    text('td', String(f.attempts)),
    text('td', f.error ? `${f.error.code}: ${f.error.message}` : ''),
    text('td', f.at || ''),
  );
  return tr;
}

async function loadFailures(more) {
  const query = '?limit=20' + (more && failuresCursor ? '&cursor=' + encodeURIComponent(failuresCursor) : '');
  const page = await api('/campaigns/' + path(id) + '/failures' + query);
  if (!more) $('failures').replaceChildren();
  $('failures').append(...page.items.map(failureRow));
  failuresCursor = page.nextCursor;
  $('more').hidden = !failuresCursor;
}

async function showProvider() {
  if (!campaign) return;
  try {
    const p = await api('/providers/' + path(campaign.provider));
    tps = p.tps ?? null;
    const breaker =
      p.breaker === 'closed'
        ? 'breaker closed'
        : `breaker ${p.breaker}${p.openUntil ? ' until ' + p.openUntil : ''} (${p.consecutiveFailures} failures in a row)`;
    const rate = p.rate < 1 ? ` · slowed to ${Math.round(p.rate * 100)} % of the cap after 429s` : '';
    const paused = p.pausedUntil ? ` · paused until ${p.pausedUntil}` : '';
    $('provider-state').textContent = `${campaign.provider} (${p.type}) · cap ${p.tps}/s${rate} · ${breaker}${paused}`;
  } catch (err) {
    $('provider-state').textContent = `${campaign.provider}: ${err.message}`;
  }
}

async function showDeadLetters() {
  try {
    const hooks = (await api('/webhooks')).items || [];
    const rows = [];
    for (const hook of hooks.filter((h) => h.deadLetters > 0)) {
      const page = await api('/webhooks/' + path(hook.name) + '/dead-letters?limit=100&campaign=' + encodeURIComponent(id));
      for (const letter of page.items) {
        const tr = document.createElement('tr');
        tr.append(
          text('td', hook.name),
          text('td', letter.type || ''),
          text('td', String(letter.attempts ?? '')),
          text('td', letter.lastError || ''),
          text('td', letter.deadAt || ''),
        );
        rows.push(tr);
      }
    }
    $('dead').replaceChildren(...rows);
    $('dead-section').hidden = rows.length === 0;
  } catch {
    // Viewers and old servers without webhooks: nothing to show.
  }
}

let ticks = 0;
async function refresh() {
  try {
    campaign = await api('/campaigns/' + path(id));
    document.title = 'pushq · ' + campaign.name;
    $('name').textContent = campaign.name;
    $('id').textContent = campaign.id;
    $('status').textContent = campaign.status;
    $('status').dataset.status = campaign.status;
    $('provider').textContent =
      campaign.provider + (campaign.fallback && campaign.fallback.length ? ' → ' + campaign.fallback.map((l) => l.provider).join(' → ') : '');
    $('failures-csv').href = '/admin/api/campaigns/' + path(id) + '/failures.csv';
    if (ticks % 10 === 0) await showProvider();
    const runId = campaign.latestRun ? campaign.latestRun.id : null;
    const series = runId ? await api('/campaigns/' + path(id) + '/runs/' + path(runId) + '/series') : { points: [] };
    const rows = drawCharts(series.points, series.now);
    showCounts(rows);
    showSchedule();
    controls();
    if (ticks % 5 === 0) showRuns((await api('/campaigns/' + path(id) + '/runs?limit=10')).items);
    const bad = campaign.counts.failed + campaign.counts.unknown;
    // New failures refresh the first page, unless the operator has paged on (then the button says so).
    if (bad !== failuresShownFor && paged) $('more').textContent = `More (${bad} in all now)`;
    else if (bad !== failuresShownFor) {
      failuresShownFor = bad;
      await loadFailures(false);
    }
    if (ticks % 5 === 0) await showDeadLetters();
    ticks += 1;
    showError('');
  } catch (err) {
    showError('cannot load the campaign: ' + err.message);
  }
}

$('more').addEventListener('click', () => {
  paged = true;
  loadFailures(true).catch((err) => showError(err.message));
});
$('find').addEventListener('submit', async (event) => {
  event.preventDefault();
  const rid = $('find-id').value.trim();
  if (!rid) return;
  try {
    const entry = await api('/campaigns/' + path(id) + '/recipients/' + path(rid));
    $('found').textContent = JSON.stringify(entry, null, 2);
  } catch (err) {
    $('found').textContent = err.message;
  }
  $('found').hidden = false;
});

(async () => {
  try {
    role = (await (await fetch('/admin/campaigns/role')).json()).role;
  } catch {
    role = 'viewer';
  }
  $('role').textContent = role === 'admin' ? 'admin' : 'viewer (read only)';
  // The next refresh a second after this one ends: never two in flight, so an older answer never paints last.
  for (;;) {
    await refresh();
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
})();
