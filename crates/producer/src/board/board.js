// paywatch's operator board: plain JavaScript over the /v1/admin API, no build step.
//
// Everything shown comes from the API and may carry text an attacker chose (order ids, metadata,
// provider answers in dead-letter reasons), so nothing is ever parsed as HTML: elements are
// built with createElement and filled with textContent only. The API token lives in this tab's
// sessionStorage and leaves only as an Authorization header.
'use strict';

const TOKEN_KEY = 'paywatch.board.token';
const POLL_MS = 2000;
// The verdict reads more than the queues (an orphan audit among them): asked for less often.
const HEALTH_MS = 10000;
const PARTS = ['checks', 'providers', 'webhooks', 'notifications', 'orphans', 'redis'];

let timer = null;
let busy = false;
let healthAt = 0;
// Payloads opened by the operator, by "queue\u0000id", kept across refreshes.
const opened = new Map();

function $(id) {
  return document.getElementById(id);
}

/** An element with text (never HTML) and attributes. */
function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('data-')) node.dataset[k.slice(5)] = v;
    else node.setAttribute(k, v);
  }
  return node;
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

class Unauthorized extends Error {}

/** Calls the admin API with the token; a 401 anywhere signs the board out. */
async function api(method, path, body) {
  const headers = { Authorization: 'Bearer ' + token(), Accept: 'application/json' };
  const init = { method, headers, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) throw new Unauthorized();
  let json = null;
  try {
    json = await response.json();
  } catch (_) {
    json = null;
  }
  if (!response.ok) {
    const message = json && typeof json.error === 'string' ? json.error : 'HTTP ' + response.status;
    throw new Error(message);
  }
  return json;
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (timer) clearInterval(timer);
  timer = null;
  opened.clear();
  // Leave nothing of what a valid token showed.
  for (const id of ['queues', 'dead']) $(id).tBodies[0].replaceChildren();
  $('health-parts').replaceChildren();
  $('health-verdict').textContent = '';
  healthAt = 0;
  $('order').replaceChildren();
  $('board').hidden = true;
  $('logout').hidden = true;
  $('live').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message || '';
  $('token').value = '';
  $('token').focus();
}

function flash(text, isError) {
  const node = $('flash');
  node.textContent = text;
  node.className = isError ? 'flash error' : 'flash';
}

function failed(err) {
  if (err instanceof Unauthorized) {
    signOut('The API refused that token (401). Enter a valid one.');
  } else {
    flash(err.message, true);
  }
}

function seconds(s) {
  if (s === null || s === undefined) return '–';
  const abs = Math.abs(s);
  const text = abs < 60 ? abs.toFixed(1) + ' s' : abs < 3600 ? (abs / 60).toFixed(1) + ' min' : (abs / 3600).toFixed(1) + ' h';
  return s < 0 ? 'late ' + text : 'in ' + text;
}

function ago(iso) {
  const ms = Date.now() - Date.parse(iso);
  if (!Number.isFinite(ms)) return iso;
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.round(s / 60) + ' min ago';
  if (s < 86400) return Math.round(s / 3600) + ' h ago';
  return Math.round(s / 86400) + ' d ago';
}

function button(label, action, attrs) {
  return el('button', label, Object.assign({ type: 'button', 'data-action': action }, attrs || {}));
}

function cell(row, text, cls) {
  const td = el('td', text, cls ? { class: cls } : {});
  row.append(td);
  return td;
}

function renderQueues(queues) {
  const body = $('queues').tBodies[0];
  body.replaceChildren(
    ...queues.map((q) => {
      const row = el('tr', null, { 'data-queue': q.name });
      cell(row, q.name);
      cell(row, q.due, 'num' + (q.due > 0 ? ' hot' : ''));
      cell(row, q.scheduled, 'num');
      cell(row, q.leased, 'num');
      cell(row, q.dead, 'num' + (q.dead > 0 ? ' bad' : ''));
      cell(row, seconds(q.next_due_in_seconds), 'num');
      cell(row, q.completed, 'num');
      cell(row, q.dead_lettered, 'num');
      const actions = cell(row, null, 'actions');
      if (q.dead > 0) {
        actions.append(
          button('Retry all', 'retry-all', { 'data-queue': q.name }),
          button('Purge all', 'purge-all', { 'data-queue': q.name, class: 'danger' })
        );
      }
      return row;
    })
  );
  $('updated').textContent = 'Live: refreshed every ' + POLL_MS / 1000 + ' s, last at ' + new Date().toLocaleTimeString();
}

/** The verdict on top: overall, then each subsystem with its likely cause. */
function renderHealth(report) {
  const verdict = $('health-verdict');
  verdict.textContent = report.verdict;
  verdict.className = 'verdict ' + report.verdict;
  $('health').dataset.verdict = report.verdict;
  $('health-parts').replaceChildren(
    ...PARTS.map((name) => {
      const part = report[name] || {};
      const item = el('li', null, { class: 'part ' + (part.verdict || 'ok'), 'data-part': name });
      item.append(el('span', name, { class: 'name' }), el('span', part.verdict || '–', { class: 'verdict ' + (part.verdict || '') }));
      item.append(el('span', part.cause || summary(name, part), { class: 'cause' }));
      return item;
    })
  );
  $('health-updated').textContent = 'Verdict of ' + report.checked_at + ', refreshed every ' + HEALTH_MS / 1000 + ' s';
}

/** A one-line account of a subsystem that is fine. */
function summary(name, part) {
  switch (name) {
    case 'checks':
      return part.due + ' due, ' + part.leased + ' running, ' + part.workers + ' worker(s)';
    case 'providers':
      return (part.providers || []).map((p) => p.provider + ' ' + p.breaker).join(', ') || 'no provider reported yet';
    case 'webhooks':
      return (part.providers || []).map((p) => p.provider + ' ' + p.state.replace('_', ' ')).join(', ') || 'none expected';
    case 'notifications':
      return (part.channels || []).map((c) => c.channel + ' ' + c.due + ' due').join(', ');
    case 'orphans':
      return part.orphans + ' among ' + part.scanned + (part.complete ? '' : ' (incomplete)');
    case 'redis':
      return (part.nodes || []).map((n) => n.node + ' ' + n.maxmemory_policy).join(', ');
    default:
      return '';
  }
}

function renderDead(page) {
  const body = $('dead').tBodies[0];
  const rows = [];
  for (const d of page.letters) {
    const row = el('tr', null, { 'data-queue': d.queue, 'data-id': d.id });
    cell(row, d.queue, 'nowrap');
    cell(row, d.id, 'mono clip').title = d.id;
    const order = cell(row, null, 'clip');
    if (d.order_id) order.append(button(d.order_id, 'order', { 'data-order': d.order_id, class: 'link' }));
    const reason = cell(row, d.reason, 'reason');
    reason.title = d.reason;
    cell(row, ago(d.at), 'nowrap').title = d.at;
    cell(row, d.attempts, 'num');
    const actions = cell(row, null, 'actions');
    const key = d.queue + '\u0000' + d.id;
    actions.append(
      button(opened.has(key) ? 'Hide' : 'Show', 'show'),
      button('Retry', 'retry'),
      button('Purge', 'purge', { class: 'danger' })
    );
    rows.push(row);
    if (opened.has(key)) rows.push(payloadRow(opened.get(key)));
  }
  body.replaceChildren(...rows);
  const shown = page.letters.length;
  $('dead-total').textContent = page.total > shown ? '(' + shown + ' oldest of ' + page.total + ')' : '(' + page.total + ')';
  $('dead-empty').hidden = page.total > 0;
}

function payloadRow(detail) {
  const row = el('tr', null, { class: 'payload' });
  const td = el('td', null, { colspan: '7' });
  const text = detail.payload_format === 'json' ? JSON.stringify(detail.payload, null, 2) : detail.payload;
  td.append(el('div', 'payload (' + detail.payload_format + ', secrets redacted)', { class: 'muted' }), el('pre', text));
  row.append(td);
  return row;
}

async function refresh() {
  if (busy || !token()) return;
  busy = true;
  try {
    const wantHealth = Date.now() - healthAt >= HEALTH_MS;
    const [queues, dead, health] = await Promise.all([
      api('GET', '/v1/admin/queues'),
      api('GET', '/v1/admin/dead-letters?limit=100'),
      wantHealth ? api('GET', '/v1/admin/health') : null,
    ]);
    if (health) {
      healthAt = Date.now();
      renderHealth(health);
    }
    renderQueues(queues.queues);
    renderDead(dead);
    $('live').hidden = false;
    $('live').textContent = 'live';
  } catch (err) {
    failed(err);
  } finally {
    busy = false;
  }
}

function path(queue, rest) {
  return '/v1/admin/queues/' + encodeURIComponent(queue) + rest;
}

async function act(action, queue, body, what) {
  try {
    const report = await api('POST', path(queue, '/' + action), body);
    const verb = action === 'retry' ? 'Retried' : 'Purged';
    flash(verb + ' ' + report.done + ' dead letter' + (report.done === 1 ? '' : 's') + ' of ' + queue + (what ? ' (' + what + ')' : '') + '.');
  } catch (err) {
    failed(err);
  }
  await refresh();
}

async function onDeadClick(event) {
  const target = event.target.closest('button[data-action]');
  if (!target) return;
  const row = target.closest('tr');
  const action = target.dataset.action;
  if (action === 'order') {
    $('order-id').value = target.dataset.order;
    await lookup(target.dataset.order);
    return;
  }
  const queue = row.dataset.queue;
  const id = row.dataset.id;
  if (action === 'show') {
    const key = queue + '\u0000' + id;
    if (opened.has(key)) {
      opened.delete(key);
    } else {
      try {
        opened.set(key, await api('GET', path(queue, '/dead-letters/' + encodeURIComponent(id))));
      } catch (err) {
        failed(err);
      }
    }
    await refresh();
  } else if (action === 'retry') {
    await act('retry', queue, { ids: [id] }, id);
  } else if (action === 'purge') {
    if (window.confirm('Purge dead letter ' + id + ' of ' + queue + '? This cannot be undone.')) {
      await act('purge', queue, { ids: [id] }, id);
    }
  }
}

async function onQueueClick(event) {
  const target = event.target.closest('button[data-action]');
  if (!target) return;
  const queue = target.dataset.queue;
  if (target.dataset.action === 'retry-all') {
    await act('retry', queue, { all: true }, 'all');
  } else if (target.dataset.action === 'purge-all') {
    if (window.confirm('Purge every dead letter of ' + queue + '? This cannot be undone.')) {
      await act('purge', queue, { all: true }, 'all');
    }
  }
}

function field(list, name, value) {
  list.append(el('dt', name), el('dd', value === null || value === undefined || value === '' ? '–' : value));
}

async function lookup(orderId) {
  const out = $('order');
  try {
    const report = await api('GET', '/v1/admin/orders/' + encodeURIComponent(orderId));
    const o = report.order;
    const summary = el('dl', null, { class: 'summary' });
    field(summary, 'order', o.order_id);
    field(summary, 'status', o.status);
    field(summary, 'phase', o.phase);
    field(summary, 'provider', o.provider + ' · ' + o.payment_id);
    field(summary, 'checks', o.checks);
    field(summary, 'next check', o.next_check_at);
    field(summary, 'check queue', report.check_queue);
    field(summary, 'notified', o.notified ? 'yes' : 'no');
    if (o.stopped) field(summary, 'stopped', o.stopped.reason);
    const parts = [el('h3', 'Order ' + o.order_id), summary];
    if (report.notifications.length > 0) {
      const table = el('table', null, { class: 'notifications' });
      const head = el('tr');
      for (const h of ['channel', 'state', 'job', 'reason']) head.append(el('th', h));
      const thead = el('thead');
      thead.append(head);
      table.append(thead);
      const body = el('tbody');
      for (const n of report.notifications) {
        const row = el('tr');
        cell(row, n.channel);
        cell(row, n.state, n.state === 'dead' ? 'bad' : '');
        cell(row, n.job_id, 'mono');
        cell(row, n.reason || '');
        body.append(row);
      }
      table.append(body);
      parts.push(el('h4', 'Notifications'), table);
    }
    const list = el('ol', null, { class: 'timeline', id: 'timeline' });
    for (const t of report.timeline) {
      const item = el('li', null, { class: 'event-' + t.event });
      item.append(el('time', t.at, { datetime: t.at }), el('span', t.status || '', { class: 'status' }), el('span', t.text));
      list.append(item);
    }
    parts.push(el('h4', 'Timeline'), list);
    out.replaceChildren(...parts);
  } catch (err) {
    if (err instanceof Unauthorized) failed(err);
    else out.replaceChildren(el('p', err.message, { class: 'error' }));
  }
}

async function start() {
  $('login').hidden = true;
  $('board').hidden = false;
  $('logout').hidden = false;
  flash('');
  await refresh();
  if (token() && !timer) timer = setInterval(refresh, POLL_MS);
}

document.addEventListener('DOMContentLoaded', () => {
  $('login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const value = $('token').value.trim();
    $('token').value = '';
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $('login-error').textContent = '';
    start();
  });
  $('logout').addEventListener('click', () => signOut(''));
  $('dead').addEventListener('click', onDeadClick);
  $('queues').addEventListener('click', onQueueClick);
  $('order-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const id = $('order-id').value.trim();
    if (id) lookup(id);
  });
  if (token()) start();
  else $('token').focus();
});
