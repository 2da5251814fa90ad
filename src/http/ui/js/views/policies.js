// Admin: policies and operator policies; virtual host and user limits.
import { api } from '../api.js';
import { h, fill, enc, kv } from '../dom.js';
import { listTable, staticTable } from '../table.js';
import { act, confirmDialog, form, field, input, select, kvEditor } from '../widgets.js';

const POLICY_KEYS = [['max-length', 'number'], ['max-length-bytes', 'number'], ['overflow'], ['message-ttl', 'number'], ['expires', 'number'],
  ['dead-letter-exchange'], ['dead-letter-routing-key'], ['delivery-limit', 'number'], ['queue-mode'], ['alternate-exchange'], ['max-age'], ['queue-version', 'number']];
const OPERATOR_KEYS = [['max-length', 'number'], ['max-length-bytes', 'number'], ['message-ttl', 'number'], ['expires', 'number'], ['delivery-limit', 'number'], ['max-in-memory-length', 'number'], ['max-in-memory-bytes', 'number']];

// The API may HTML-escape validation texts (as RabbitMQ does for /api/policies); show them as plain text.
function unescapeHtml(s) {
  return s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, '&');
}

function deleteBtn(what, path, after) {
  const b = h('button', { type: 'button', class: 'small danger' }, 'Delete');
  b.addEventListener('click', async () => {
    if (!(await confirmDialog(`Delete ${what}?`, 'Delete'))) return;
    await act(null, async () => { await api.del(path); await after(); }, 'Deleted');
  });
  return b;
}

function policyList(ctx, operator) {
  const kind = operator ? 'operator-policies' : 'policies';
  const path = () => (ctx.vhost() ? `/${kind}/${enc(ctx.vhost())}` : `/${kind}`);
  let t;
  const cols = [
    { key: 'vhost', label: 'Virtual host' },
    { key: 'name', label: 'Name' },
    { key: 'pattern', label: 'Pattern' },
    { key: 'apply-to', label: 'Apply to' },
    { key: 'definition', label: 'Definition', sortable: false, render: (p) => kv(p.definition) },
    { key: 'priority', label: 'Priority', num: true },
    { key: 'action', label: 'Action', sortable: false, render: (p) => deleteBtn(`${operator ? 'operator policy' : 'policy'} "${p.name}"`, `/${kind}/${enc(p.vhost)}/${enc(p.name)}`, () => t.refresh()) },
  ];
  t = listTable({ id: kind, title: operator ? 'Operator policies' : 'User policies', caption: operator ? 'Operator policies' : 'Policies', path, serverPaged: false, columns: cols, empty: 'No policies' });
  const addForm = form(operator ? 'add-operator-policy' : 'add-policy', [
    field('Virtual host', select('vhost', ctx.vhosts, ctx.vhost() || ctx.vhosts[0])),
    field('Name', input('name', { required: true })),
    field('Pattern', input('pattern', { required: true, placeholder: '^amq.' }), 'A regular expression matched against queue or exchange names.'),
    field('Apply to', select('apply-to', operator ? [['queues', 'Queues']] : [['all', 'Exchanges and queues'], ['exchanges', 'Exchanges'], ['queues', 'Queues']], operator ? 'queues' : 'all')),
    field('Priority', input('priority', { type: 'number', value: 0 })),
    kvEditor('definition', 'Definition', operator ? OPERATOR_KEYS : POLICY_KEYS),
    h('button', { type: 'submit', class: 'primary' }, operator ? 'Add / update operator policy' : 'Add / update policy'),
  ], async (v) => {
    try {
      await api.put(`/${kind}/${enc(v.vhost)}/${enc(v.name)}`, { pattern: v.pattern, 'apply-to': v['apply-to'], priority: Number(v.priority || 0), definition: v.definition });
    } catch (e) { e.message = unescapeHtml(e.message); throw e; }
    await t.refresh();
  }, 'Policy saved');
  return { t, el: [t.el, h('details', { class: 'panel fold', open: !operator }, h('summary', null, h('h2', null, operator ? 'Add / update an operator policy' : 'Add / update a policy')), addForm)] };
}

export async function policiesPage(main, _p, ctx) {
  const user = policyList(ctx, false);
  const op = policyList(ctx, true);
  fill(main, h('h1', null, 'Policies'), user.el, op.el);
  const refresh = () => Promise.all([user.t.refresh(), op.t.refresh()]);
  await refresh();
  return { refresh };
}

export async function limitsPage(main, _p, ctx) {
  const vl = h('div');
  const ul = h('div');
  async function refresh() {
    const [vlimits, ulimits] = await Promise.all([api.get('/vhost-limits'), api.get('/user-limits').catch(() => [])]);
    const flat = (list, who) => list.flatMap((e) => Object.entries(e.value || {}).map(([k, val]) => ({ who: e[who], k, val })));
    fill(vl, staticTable([
      { label: 'Virtual host', render: (r) => r.who }, { label: 'Limit', render: (r) => r.k }, { label: 'Value', num: true, render: (r) => r.val },
      { label: 'Action', render: (r) => deleteBtn(`limit ${r.k} of ${r.who}`, `/vhost-limits/${enc(r.who)}/${enc(r.k)}`, refresh) },
    ], flat(vlimits, 'vhost'), 'No virtual host limits', { class: 'list vhost-limits' }));
    fill(ul, staticTable([
      { label: 'User', render: (r) => r.who }, { label: 'Limit', render: (r) => r.k }, { label: 'Value', num: true, render: (r) => r.val },
      { label: 'Action', render: (r) => deleteBtn(`limit ${r.k} of ${r.who}`, `/user-limits/${enc(r.who)}/${enc(r.k)}`, refresh) },
    ], flat(ulimits, 'user'), 'No user limits', { class: 'list user-limits' }));
  }
  const vform = form('set-vhost-limit', [
    field('Virtual host', select('vhost', ctx.vhosts, ctx.vhost() || ctx.vhosts[0])),
    field('Limit', select('name', [['max-connections', 'Max connections'], ['max-queues', 'Max queues']], 'max-connections')),
    field('Value', input('value', { type: 'number', required: true }), '-1 means unlimited'),
    h('button', { type: 'submit', class: 'primary' }, 'Set limit'),
  ], async (v) => { await api.put(`/vhost-limits/${enc(v.vhost)}/${enc(v.name)}`, { value: Number(v.value) }); await refresh(); }, 'Limit set');
  const uform = form('set-user-limit', [
    field('User', input('user', { required: true })),
    field('Limit', select('name', [['max-connections', 'Max connections'], ['max-channels', 'Max channels']], 'max-connections')),
    field('Value', input('value', { type: 'number', required: true }), '-1 means unlimited'),
    h('button', { type: 'submit', class: 'primary' }, 'Set limit'),
  ], async (v) => { await api.put(`/user-limits/${enc(v.user)}/${enc(v.name)}`, { value: Number(v.value) }); await refresh(); }, 'Limit set');
  fill(main, h('h1', null, 'Limits'),
    h('section', { class: 'panel' }, h('h2', null, 'Virtual host limits'), vl, h('h3', null, 'Set a virtual host limit'), vform),
    h('section', { class: 'panel' }, h('h2', null, 'User limits'), ul, h('h3', null, 'Set a user limit'), uform));
  await refresh();
  return { refresh };
}
