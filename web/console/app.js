// The console: sign in with the admin token, watch the service's metrics,
// inspect and act on one account. Talks only to the admin API.

import { lineChart } from './charts.js';
import { mean, parse, quantile, rate } from './prom.js';

const TOKEN_KEY = 'streamguard.adminToken';
const REFRESH_MS = 3000;
const WINDOW_MS = 120_000;
const $ = (selector) => document.querySelector(selector);

const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** Server clock minus ours, from the Date header, so countdowns match the server. */
let clockOffsetMs = 0;

/** Calls the admin API; resolves with the Response; signs out on 401/403. */
async function admin(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: {
      authorization: `Bearer ${token.get()}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const date = Date.parse(response.headers.get('date') ?? '');
  if (!Number.isNaN(date) && Math.abs(date - Date.now()) > 2000) clockOffsetMs = date - Date.now();
  if (response.status === 401 || response.status === 403) {
    token.clear();
    show();
    throw new Error('the admin token was refused');
  }
  return response;
}

async function problem(response) {
  try {
    const body = await response.json();
    return body.detail ?? body.title ?? `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

// ---- sign in ------------------------------------------------------------

$('#login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const candidate = $('#token').value.trim();
  let response;
  try {
    response = await fetch('/admin/metrics', { headers: { authorization: `Bearer ${candidate}` } });
  } catch (error) {
    $('#login-error').textContent = `The service did not answer: ${error.message}`;
    return;
  }
  if (response.ok) {
    token.set(candidate);
    $('#token').value = '';
    $('#login-error').textContent = '';
    show();
  } else {
    $('#login-error').textContent = response.status === 403 ? 'That is not the admin token.' : await problem(response);
  }
});

$('#logout').addEventListener('click', () => {
  token.clear();
  show();
});

window.addEventListener('hashchange', show);

let timers = [];
function stopTimers() {
  timers.forEach(clearInterval);
  timers = [];
}

/** Shows the view the hash names, or the sign-in form. */
function show() {
  stopTimers();
  const signedIn = Boolean(token.get());
  $('#login').hidden = signedIn;
  $('#nav').hidden = !signedIn;
  const [view, query] = location.hash.slice(1).split('?');
  const current = signedIn ? (view === 'accounts' ? 'accounts' : 'overview') : null;
  for (const section of document.querySelectorAll('.view')) section.hidden = section.id !== current;
  for (const link of document.querySelectorAll('#nav a[data-view]')) {
    link.classList.toggle('active', link.dataset.view === current);
  }
  if (current === 'overview') startOverview();
  if (current === 'accounts') {
    const user = new URLSearchParams(query ?? '').get('user');
    if (user) {
      $('#user').value = user;
      openAccount(user);
    } else {
      $('#account').hidden = true;
    }
  }
}

// ---- overview -----------------------------------------------------------

const history = []; // [{ t, samples }]

const DECISIONS = [
  ['granted', '#2e7d32'],
  ['denied', '#c62828'],
  ['evicted', '#ef6c00'],
  ['expired', '#6a1b9a'],
];

async function scrape() {
  try {
    const response = await admin('GET', '/admin/metrics');
    if (!response.ok) throw new Error(await problem(response));
    history.push({ t: Date.now(), samples: parse(await response.text()) });
    while (history.length && history[0].t < Date.now() - WINDOW_MS - 10_000) history.shift();
    $('#overview-status').textContent = `updated ${new Date().toLocaleTimeString()}`;
    $('#overview-status').classList.remove('error');
  } catch (error) {
    $('#overview-status').textContent = `metrics unavailable: ${error.message}`;
    $('#overview-status').classList.add('error');
  }
  drawOverview();
}

/** One point per pair of consecutive scrapes, at the later one. */
function pointsOf(compute) {
  const points = [];
  for (let i = 1; i < history.length; i++) {
    const a = history[i - 1];
    const b = history[i];
    points.push({ t: b.t, v: compute(a.samples, b.samples, (b.t - a.t) / 1000) });
  }
  return points;
}

function drawOverview() {
  // The last two minutes, or less while the console has seen less.
  const seen = history.length ? Date.now() - history[0].t : 0;
  const windowMs = Math.min(WINDOW_MS, Math.max(30_000, seen));
  const decisions = (outcome) => (a, b, dt) => rate(a, b, 'streamguard_decisions_total', { outcome }, dt);
  lineChart($('#chart-decisions'), {
    unit: '/s',
    windowMs,
    series: [
      ...DECISIONS.map(([name, color]) => ({ name, color, points: pointsOf(decisions(name)) })),
      // Streams the store had forgotten, re-admitted from their grants.
      { name: 'resumed', color: '#00897b', points: pointsOf((a, b, dt) => rate(a, b, 'streamguard_resumed_total', {}, dt)) },
    ],
  });
  const latency = 'streamguard_store_call_duration_seconds';
  const ms = (v) => (v === undefined ? undefined : v * 1000);
  lineChart($('#chart-latency'), {
    unit: 'ms',
    windowMs,
    series: [
      { name: 'p50', color: '#1565c0', points: pointsOf((a, b) => ms(quantile(a, b, latency, 0.5))) },
      { name: 'p99', color: '#00838f', points: pointsOf((a, b) => ms(quantile(a, b, latency, 0.99))) },
      { name: 'mean', color: '#90a4ae', points: pointsOf((a, b) => ms(mean(a, b, latency))) },
    ],
  });
  lineChart($('#chart-errors'), {
    unit: '/s',
    windowMs,
    series: [
      { name: 'error', color: '#c62828', points: pointsOf((a, b, dt) => rate(a, b, 'streamguard_store_errors_total', { kind: 'error' }, dt)) },
      { name: 'timeout', color: '#ef6c00', points: pointsOf((a, b, dt) => rate(a, b, 'streamguard_store_errors_total', { kind: 'timeout' }, dt)) },
    ],
  });
  lineChart($('#chart-renewals'), {
    unit: '/s',
    windowMs,
    series: [
      { name: 'renewed', color: '#2e7d32', points: pointsOf(decisions('renewed')) },
      { name: 'stopped', color: '#546e7a', points: pointsOf(decisions('stopped')) },
      { name: 'revoked', color: '#ad1457', points: pointsOf(decisions('revoked')) },
      { name: 'replaced', color: '#f9a825', points: pointsOf(decisions('replaced')) },
    ],
  });
}

function startOverview() {
  scrape();
  timers.push(setInterval(scrape, REFRESH_MS));
}

// ---- accounts -----------------------------------------------------------

let account; // { user, streams: [...] }

$('#lookup-form').addEventListener('submit', (event) => {
  event.preventDefault();
  location.hash = `accounts?user=${encodeURIComponent($('#user').value.trim())}`;
});

async function openAccount(user) {
  account = { user, streams: [] };
  $('#account-error').textContent = '';
  $('#plan-note').textContent = '';
  // Timers first: leaving the view during the first load clears them.
  timers.push(setInterval(loadAccount, REFRESH_MS));
  timers.push(setInterval(tick, 250));
  await loadAccount();
}

const userPath = () => `/admin/users/${encodeURIComponent(account.user)}`;

async function loadAccount() {
  const user = account.user;
  try {
    const [limitRes, streamsRes, planRes] = await Promise.all([
      admin('GET', `${userPath()}/limit`),
      admin('GET', `${userPath()}/streams`),
      admin('GET', `${userPath()}/plan`),
    ]);
    if (!limitRes.ok) throw new Error(await problem(limitRes));
    if (!streamsRes.ok) throw new Error(await problem(streamsRes));
    if (!planRes.ok) throw new Error(await problem(planRes));
    const limit = await limitRes.json();
    const streams = await streamsRes.json();
    const plan = await planRes.json();
    if (account.user !== user) return;
    account.streams = streams.streams;
    $('#account').hidden = false;
    $('#account-error').textContent = '';
    $('#limit-value').textContent = String(limit.limit);
    // The source is shown as the server names it (default, override, …).
    $('#limit-source').textContent = limit.source;
    $('#limit-source').dataset.source = limit.source;
    $('#active-count').textContent = `${streams.active} of ${streams.limit} in use`;
    renderPlan(plan);
    renderStreams();
  } catch (error) {
    $('#account-error').textContent = error.message;
  }
}

/** The account's plan, where it comes from, and each rule's usage. */
function renderPlan(plan) {
  $('#plan-name').textContent = plan.plan;
  // As the server names it: override (set here), claim (token or gateway), default.
  $('#plan-source').textContent = plan.source;
  $('#plan-source').dataset.source = plan.source;
  $('#plan-limit').textContent = `account limit ${plan.limit}`;
  const body = $('#rules tbody');
  body.replaceChildren(
    ...plan.rules.map((rule) => {
      const row = document.createElement('tr');
      row.dataset.rule = rule.name;
      row.classList.toggle('full', rule.in_use >= rule.max);
      for (const text of [rule.name, String(rule.in_use), String(rule.max)]) {
        const cell = document.createElement('td');
        cell.textContent = text;
        row.append(cell);
      }
      return row;
    }),
  );
  $('#rules').hidden = plan.rules.length === 0;
  $('#no-rules').hidden = plan.rules.length !== 0;
}

/** A stream's tags as `name=value` chips (textContent only: values come from players). */
function tagsCell(tags) {
  const cell = document.createElement('td');
  cell.className = 'tags';
  const entries = Object.entries(tags ?? {});
  if (entries.length === 0) cell.textContent = '–';
  for (const [name, value] of entries) {
    const chip = document.createElement('span');
    chip.className = 'tag';
    chip.textContent = `${name}=${value}`;
    cell.append(chip);
  }
  return cell;
}

function renderStreams() {
  const body = $('#streams tbody');
  body.replaceChildren(
    ...account.streams.map((s) => {
      const row = document.createElement('tr');
      row.dataset.stream = s.id;
      const text = (value) => {
        const cell = document.createElement('td');
        cell.textContent = value;
        return cell;
      };
      row.append(text(s.id), text(s.device_id ?? '–'), text(s.content_id ?? '–'), tagsCell(s.tags));
      row.append(text(new Date(s.started_at).toLocaleTimeString()));
      const countdown = document.createElement('td');
      countdown.className = 'countdown';
      countdown.dataset.expires = s.expires_at;
      row.append(countdown);
      const action = document.createElement('td');
      const revoke = document.createElement('button');
      revoke.textContent = 'Revoke';
      revoke.className = 'danger';
      revoke.addEventListener('click', () => revokeStream(s.id));
      action.append(revoke);
      row.append(action);
      return row;
    }),
  );
  $('#streams').hidden = account.streams.length === 0;
  $('#no-streams').hidden = account.streams.length !== 0;
  tick();
}

/** Updates the countdowns to expiry. */
function tick() {
  const now = Date.now() + clockOffsetMs;
  for (const cell of document.querySelectorAll('#streams .countdown')) {
    const left = (Date.parse(cell.dataset.expires) - now) / 1000;
    cell.textContent = left > 0 ? `${left.toFixed(1)} s` : 'expired';
    cell.classList.toggle('soon', left < 5);
  }
}

/**
 * An admin call that changes the account; shows why when it fails (a
 * refusal or no answer at all), reloads the account when it worked.
 */
async function change(method, path, body) {
  let answer;
  try {
    const response = await admin(method, path, body);
    if (!response.ok) {
      $('#account-error').textContent = await problem(response);
      return false;
    }
    answer = response.status === 204 ? {} : await response.json().catch(() => ({}));
  } catch (error) {
    $('#account-error').textContent = `The service did not answer: ${error.message}`;
    return false;
  }
  await loadAccount();
  return answer;
}

function revokeStream(id) {
  return change('DELETE', `${userPath()}/streams/${encodeURIComponent(id)}`);
}

$('#limit-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  if (await change('PUT', `${userPath()}/limit`, { limit: Number($('#limit-input').value) })) {
    $('#limit-input').value = '';
  }
});

$('#limit-clear').addEventListener('click', () => change('DELETE', `${userPath()}/limit`));

/** Says what a plan change did: streams the new plan does not allow are revoked at once. */
function planNote(answer, done) {
  const revoked = answer.revoked ?? [];
  $('#plan-note').textContent = revoked.length
    ? `${done}; revoked ${revoked.length} stream${revoked.length === 1 ? '' : 's'} it does not allow: ${revoked.join(', ')}`
    : `${done}.`;
}

$('#plan-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  $('#plan-note').textContent = '';
  const plan = $('#plan-input').value.trim();
  const answer = await change('PUT', `${userPath()}/plan`, { plan });
  if (answer) {
    $('#plan-input').value = '';
    planNote(answer, `Plan set to ${plan}`);
  }
});

$('#plan-clear').addEventListener('click', async () => {
  $('#plan-note').textContent = '';
  const answer = await change('DELETE', `${userPath()}/plan`);
  if (answer) planNote(answer, 'Plan cleared: the claimed or default plan applies');
});

show();
