// The SRE console: polls the admin API once a second and renders with
// textContent only (no HTML from data). Every action asks for confirmation
// and a reason; the server audits it.

const POLL_MS = 1000;
const HISTORY_POINTS = 300;
const OPERATOR = 'operator';

const MEMBER_COLOURS = ['#1565c0', '#2e7d32', '#6a1b9a', '#ef6c00', '#00838f', '#ad1457'];

const state = { roles: new Set(), history: [], lastTotals: undefined, lastMemberTotals: undefined, lastPollAt: 0, members: [], drill: null, ticks: 0 };

const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function emptyRow(text, columns) {
  const row = el('tr');
  const cell = el('td', text, 'muted');
  cell.colSpan = columns;
  row.append(cell);
  return row;
}

function stateCell(value) {
  return el('td', value ?? '–', `state-${value}`);
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    credentials: 'same-origin',
    headers: { 'x-hyok-console': '1', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    window.location.assign('/console/login');
    throw new Error('session expired');
  }
  const payload = response.status === 204 ? {} : await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(`${response.status} ${payload.error ?? ''}: ${payload.message ?? 'request failed'}`);
  return payload;
}

function showBanner(message) {
  const banner = $('banner');
  banner.textContent = message;
  banner.hidden = message === '';
}

/** Resolves to the reason (possibly empty) when confirmed, or undefined when cancelled. */
function confirmAction(text) {
  const dialog = $('confirm');
  $('confirm-text').textContent = text;
  $('confirm-reason').value = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok' ? $('confirm-reason').value.trim() : undefined), { once: true });
    dialog.showModal();
  });
}

async function act(description, method, path, body) {
  const reason = await confirmAction(description);
  if (reason === undefined) return;
  try {
    await api(method, path, typeof body === 'function' ? body(reason) : body);
    showBanner('');
  } catch (error) {
    showBanner(`${description} failed: ${error.message}`);
  }
  await refresh();
}

function withReason(reason, extra = {}) {
  return reason === '' ? extra : { ...extra, reason };
}

function renderMembers(members) {
  const body = $('members').tBodies[0];
  const canOperate = state.roles.has(OPERATOR);
  body.replaceChildren(
    ...members.map((member) => {
      const row = el('tr');
      row.dataset.member = member.id;
      row.append(
        el('td', member.id, 'id'),
        el('td', member.zone ?? '–'),
        stateCell(member.health),
        stateCell(member.mode),
        stateCell(member.breaker),
        el('td', member.latencyMs === null ? '–' : `${member.latencyMs.toFixed(2)} ms`, 'num'),
        el('td', member.inFlight, 'num'),
        el('td', `${member.agents.serving}/${member.agents.total}`, 'num'),
        el('td', member.fence ? `fenced by ${member.fence.by}: ${member.fence.reason}` : member.lastError ? member.lastError.message : ''),
      );
      const actions = el('td');
      for (const [name, label, allowed] of [
        ['drain', 'Drain', member.mode === 'serving'],
        ['fence', 'Fence', member.mode !== 'fenced'],
        ['restore', 'Restore', member.mode !== 'serving'],
      ]) {
        const button = el('button', label, name === 'fence' ? 'danger' : 'secondary');
        button.type = 'button';
        button.dataset.action = name;
        button.disabled = !canOperate || !allowed;
        button.addEventListener('click', () =>
          act(`${label} member ${member.id}?`, 'POST', `/admin/v1/members/${encodeURIComponent(member.id)}/${name}`, (reason) => withReason(reason)),
        );
        actions.append(button);
      }
      row.append(actions);
      return row;
    }),
  );
  // Rebuilt only when the members change, so an open drop-down is not closed under the user every second.
  const select = $('drill-member');
  const ids = members.map((member) => member.id).join('\n');
  if (select.dataset.members !== ids) {
    const chosen = select.value;
    select.replaceChildren(el('option', 'least busy'), ...members.map((member) => el('option', member.id)));
    select.options[0].value = '';
    select.value = members.some((member) => member.id === chosen) ? chosen : '';
    select.dataset.members = ids;
  }
}

function renderApis(apis) {
  const rows = apis.filter((entry) => entry.requests > 0 || entry.errors > 0);
  $('apis').tBodies[0].replaceChildren(
    ...(rows.length === 0
      ? [emptyRow('No requests in the last 10 s.', 6)]
      : rows.map((entry) => {
          const row = el('tr');
          row.append(
            el('td', entry.contract),
            el('td', entry.api),
            el('td', entry.ratePerSecond.toFixed(1), 'num'),
            el('td', entry.errorsPerSecond.toFixed(1), entry.errors > 0 ? 'num state-failure' : 'num'),
            el('td', entry.p50Ms ?? '–', 'num'),
            el('td', entry.p99Ms ?? '–', 'num'),
          );
          return row;
        })),
  );
}

function renderDrill(drill) {
  state.drill = drill;
  const running = drill !== null && drill.status === 'running';
  $('drill-start').disabled = running || !state.roles.has(OPERATOR);
  $('drill-stop').disabled = !running || !state.roles.has(OPERATOR);
  const status = $('drill-status');
  if (drill === null) {
    status.textContent = 'No drill has run in this process.';
    return;
  }
  const ends = running ? `, ends ${new Date(drill.endsAt).toLocaleTimeString()}` : `, ended ${new Date(drill.endedAt).toLocaleTimeString()}`;
  status.textContent = `Drill ${drill.scenario} of ${drill.member} by ${drill.startedBy}: ${drill.status}${ends}; ${drill.requests} requests, ${drill.errors} failed${drill.detail ? `; ${drill.detail}` : ''}.`;
  status.className = drill.status === 'failed' || drill.errors > 0 ? 'error' : 'muted';
}

function renderKeys(keys) {
  const canStop = state.roles.has(OPERATOR) || state.roles.has('key-admin');
  const stores = new Set();
  $('keys').tBodies[0].replaceChildren(
    ...keys.map((key) => {
      const row = el('tr');
      row.dataset.key = `${key.keyStore}/${key.id}`;
      const killed = key.killSwitch !== null || key.storeKilled;
      row.append(
        el('td', key.keyStore),
        el('td', key.id),
        stateCell(key.state),
        el('td', key.currentVersion, 'num'),
        el('td', key.storeKilled ? 'key store stopped' : key.killSwitch ? `engaged by ${key.killSwitch.by}` : '', killed ? 'state-killed' : ''),
      );
      const actions = el('td');
      const stop = el('button', 'Kill switch', 'danger');
      stop.type = 'button';
      stop.disabled = !canStop || killed || key.state === 'destroyed';
      stop.addEventListener('click', () =>
        act(`Engage the kill switch for key ${key.id} in ${key.keyStore}? Every request for it fails until a dual-control restore.`, 'POST', '/admin/v1/killswitch', (reason) =>
          withReason(reason, { keyStore: key.keyStore, keyId: key.id }),
        ),
      );
      actions.append(stop);
      if (!stores.has(key.keyStore)) {
        stores.add(key.keyStore);
        const stopStore = el('button', 'Stop key store', 'danger');
        stopStore.type = 'button';
        stopStore.disabled = !canStop || key.storeKilled;
        stopStore.addEventListener('click', () =>
          act(`Stop the whole key store ${key.keyStore}? Every key in it fails until a dual-control restore.`, 'POST', '/admin/v1/killswitch', (reason) =>
            withReason(reason, { keyStore: key.keyStore }),
          ),
        );
        actions.append(stopStore);
      }
      if (killed) {
        const restore = el('button', 'Request restore', 'secondary');
        restore.type = 'button';
        restore.disabled = !canStop;
        restore.addEventListener('click', () =>
          act(`Ask for a restore of ${key.storeKilled ? `key store ${key.keyStore}` : `key ${key.id}`}? Approvers must confirm it.`, 'POST', '/admin/v1/killswitch/restore', (reason) =>
            withReason(reason, key.storeKilled ? { keyStore: key.keyStore } : { keyStore: key.keyStore, keyId: key.id }),
          ),
        );
        actions.append(restore);
      }
      row.append(actions);
      return row;
    }),
  );
}

function renderApprovals(view) {
  const canDecide = state.roles.has('approver');
  const pending = view.approvals.filter((approval) => approval.status === 'pending');
  $('approvals').tBodies[0].replaceChildren(
    ...(pending.length === 0
      ? [emptyRow('No pending requests.', 7)]
      : pending.map((approval) => {
          const row = el('tr');
          row.dataset.approval = approval.id;
          row.append(
            el('td', approval.action),
            el('td', approval.target),
            el('td', approval.requestedBy),
            el('td', `${approval.approvals.length} of ${view.requiredApprovals}`, 'num'),
            el('td', new Date(approval.expiresAt).toLocaleString()),
            // The requester can read the digest out of band; the approver checks it before approving.
            el('td', approval.digest.slice(0, 16), 'digest'),
          );
          const actions = el('td');
          for (const [name, label, style] of [['approve', 'Approve', 'secondary'], ['reject', 'Reject', 'danger']]) {
            const button = el('button', label, style);
            button.type = 'button';
            button.dataset.action = name;
            button.disabled = !canDecide;
            button.addEventListener('click', () =>
              act(`${label} ${approval.action} on ${approval.target}, requested by ${approval.requestedBy} (digest ${approval.digest.slice(0, 16)}…)?`, 'POST', `/admin/v1/approvals/${encodeURIComponent(approval.id)}/${name}`, () =>
                name === 'approve' ? { digest: approval.digest } : undefined,
              ),
            );
            actions.append(button);
          }
          row.append(actions);
          return row;
        })),
  );
}

function renderAudit(records) {
  $('audit').tBodies[0].replaceChildren(
    ...records.map((record) => {
      const row = el('tr');
      const who = record.actor ?? record.awsPrincipalArn ?? record.accessKeyId ?? '';
      const what = record.action ?? record.api ?? record.detail ?? '';
      const target = record.target ?? (record.externalKeyId ? `${record.keyStore ?? ''}/${record.externalKeyId}` : '');
      const outcome = record.outcome ?? '';
      row.append(
        el('td', record.time ? new Date(record.time).toLocaleTimeString() : ''),
        el('td', record.event),
        el('td', who),
        el('td', what),
        el('td', target),
        el('td', record.errorName ? `${outcome} (${record.errorName})` : outcome, `state-${outcome}`),
      );
      return row;
    }),
  );
}

/** One line per series over the history, drills shaded; `series` is [[label, colour, point => value]]. */
function drawLines(canvas, series) {
  const context = canvas.getContext('2d');
  const { width, height } = canvas;
  context.clearRect(0, 0, width, height);
  const points = state.history;
  if (points.length < 2) return;
  const peak = Math.max(1, ...points.flatMap((point) => series.map(([, , value]) => value(point))));
  const x = (index) => (index / (HISTORY_POINTS - 1)) * width;
  const y = (value) => height - 4 - (value / peak) * (height - 20);
  const offset = HISTORY_POINTS - points.length;
  context.fillStyle = '#b26a0040';
  points.forEach((point, index) => {
    if (point.drill) context.fillRect(x(offset + index), 0, width / HISTORY_POINTS + 1, height);
  });
  for (const [, colour, value] of series) {
    context.strokeStyle = colour;
    context.lineWidth = 2;
    context.beginPath();
    points.forEach((point, index) => (index === 0 ? context.moveTo(x(offset + index), y(value(point))) : context.lineTo(x(offset + index), y(value(point)))));
    context.stroke();
  }
  context.fillStyle = '#777';
  context.fillText(`${peak.toFixed(0)}/s`, 4, 12);
}

function drawCharts() {
  drawLines($('chart'), [
    ['requests/s', '#1565c0', (point) => point.rate],
    ['errors/s', '#c62828', (point) => point.errors],
  ]);
  const memberSeries = state.members.map((member, index) => [member.id, MEMBER_COLOURS[index % MEMBER_COLOURS.length], (point) => point.members[member.id] ?? 0]);
  drawLines($('member-chart'), memberSeries);
  const legend = $('member-legend');
  const text = memberSeries.map(([id]) => id).join('\n');
  if (legend.dataset.members !== text) {
    legend.replaceChildren(
      el('span', 'HSM operations/s by member (probes included):'),
      ...memberSeries.flatMap(([id, colour]) => {
        const swatch = el('span', undefined, 'swatch');
        swatch.style.background = colour;
        return [swatch, el('span', id, 'member-name')];
      }),
    );
    legend.dataset.members = text;
  }
}

function recordHistory(totals, memberTotals, drill) {
  const now = Date.now();
  if (state.lastTotals !== undefined) {
    const seconds = Math.max(0.001, (now - state.lastPollAt) / 1000);
    const perSecond = (after, before) => Math.max(0, (after - (before ?? 0)) / seconds);
    const members = {};
    for (const [id, counts] of Object.entries(memberTotals)) members[id] = perSecond(counts.operations, state.lastMemberTotals[id]?.operations);
    state.history.push({
      rate: perSecond(totals.requests, state.lastTotals.requests),
      errors: perSecond(totals.errors, state.lastTotals.errors),
      members,
      drill: drill !== null && drill.status === 'running',
    });
    if (state.history.length > HISTORY_POINTS) state.history.shift();
  }
  state.lastTotals = totals;
  state.lastMemberTotals = memberTotals;
  state.lastPollAt = now;
  drawCharts();
}

async function refresh() {
  const overview = await api('GET', '/admin/v1/overview');
  state.members = overview.members;
  renderMembers(overview.members);
  renderApis(overview.apis);
  renderDrill(overview.drill);
  recordHistory(overview.totals, overview.memberOperations, overview.drill);
  if (state.ticks % 2 === 0) {
    // Audit records name principals and key ids: only operators and auditors may read them.
    const mayReadAudit = state.roles.has(OPERATOR) || state.roles.has('auditor');
    const [keys, approvals, audit] = await Promise.allSettled([
      api('GET', '/admin/v1/keys'),
      api('GET', '/admin/v1/approvals'),
      mayReadAudit ? api('GET', '/admin/v1/audit/recent?limit=30') : Promise.resolve(undefined),
    ]);
    if (keys.status === 'fulfilled') renderKeys(keys.value.keys);
    if (approvals.status === 'fulfilled') renderApprovals(approvals.value);
    if (audit.status === 'fulfilled') {
      if (audit.value === undefined) $('audit').tBodies[0].replaceChildren(emptyRow('Audit records need the operator or auditor role.', 6));
      else renderAudit(audit.value.records);
    }
  }
  state.ticks++;
  const badge = $('freshness');
  badge.textContent = `live · ${new Date(overview.generatedAt).toLocaleTimeString()}`;
  badge.className = 'badge live';
}

async function loop() {
  try {
    await refresh();
  } catch (error) {
    const badge = $('freshness');
    badge.textContent = `stale: ${error.message}`;
    badge.className = 'badge stale';
  }
  setTimeout(loop, POLL_MS);
}

async function start() {
  const me = await api('GET', '/admin/v1/whoami');
  state.roles = new Set(me.roles);
  $('whoami').textContent = `${me.actor} (${me.via}; ${me.roles.join(', ') || 'no roles'})${me.expiresAt ? `, session until ${new Date(me.expiresAt).toLocaleTimeString()}` : ''}`;
  $('logout').addEventListener('click', async () => {
    await fetch('/console/session', { method: 'DELETE', credentials: 'same-origin', headers: { 'x-hyok-console': '1' } });
    window.location.assign('/console/login');
  });
  $('drill-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const scenario = $('drill-scenario').value;
    const member = $('drill-member').value;
    const durationSeconds = Number($('drill-duration').value);
    act(`Start the ${scenario} drill${member ? ` on ${member}` : ''} for ${durationSeconds} s? The member is put back automatically.`, 'POST', '/admin/v1/drills', (reason) =>
      withReason(reason, { scenario, durationSeconds, ...(member ? { member } : {}) }),
    );
  });
  $('drill-stop').addEventListener('click', () => act('Stop the drill now and restore its member?', 'POST', '/admin/v1/drills/current/stop', undefined));
  await loop();
}

start().catch((error) => showBanner(`The console could not start: ${error.message}`));
