// Admin: users (add, tags, password, delete, permissions, topic permissions) and virtual hosts
// (add, delete, permissions).
import { api } from '../api.js';
import { h, fill, enc, num, rate, link, section, fold, facts } from '../dom.js';
import { listTable, staticTable } from '../table.js';
import { act, confirmDialog, form, field, input, select, notify } from '../widgets.js';

const TAGS = ['administrator', 'monitoring', 'policymaker', 'management', 'impersonator'];

function tagsField(id) {
  const inp = input('tags', { id, placeholder: 'comma separated' });
  const quick = h('div', { class: 'kv-shortcuts' }, 'Set: ', TAGS.map((t) => h('button', {
    type: 'button', class: 'link', onclick: () => {
      const cur = inp.value.split(',').map((x) => x.trim()).filter(Boolean);
      if (!cur.includes(t)) cur.push(t);
      inp.value = cur.join(', ');
    },
  }, t)));
  return h('div', { class: 'field' }, h('label', { for: id }, 'Tags'), h('div', null, inp, quick));
}

const userHref = (n) => `#/users/${enc(n)}`;
const vhostHref = (n) => `#/vhosts/${enc(n)}`;
const tagText = (t) => (Array.isArray(t) ? t.join(', ') : t || '');

export async function usersPage(main) {
  let perms = [];
  const t = listTable({
    id: 'users', caption: 'Users', path: '/users', serverPaged: false, empty: 'No users',
    columns: [
      { key: 'name', label: 'Name', render: (u) => link(userHref(u.name), u.name) },
      { key: 'tags', label: 'Tags', render: (u) => tagText(u.tags) },
      { key: 'vhosts', label: 'Can access virtual hosts', sortable: false, render: (u) => perms.filter((p) => p.user === u.name).map((p) => p.vhost).join(', ') || h('span', { class: 'muted' }, 'No access') },
      { key: 'password', label: 'Has password', sortable: false, render: (u) => (u.password_hash ? 'yes' : 'no') },
      { key: 'limits', label: 'Limits', sortable: false, hide: true, render: (u) => Object.entries(u.limits || {}).map(([k, v]) => `${k}: ${v}`).join(', ') },
    ],
  });
  const refresh = async () => { perms = await api.get('/permissions').catch(() => []); await t.refresh(); };
  const add = form('add-user', [
    field('Username', input('name', { required: true, id: 'new-user-name' })),
    field('Password', input('password', { type: 'password', autocomplete: 'new-password', id: 'new-user-password' }), 'Leave empty for a user that cannot log in with a password.'),
    tagsField('new-user-tags'),
    h('button', { type: 'submit', class: 'primary' }, 'Add user'),
  ], async (v) => {
    const body = { tags: v.tags };
    if (v.password) body.password = v.password; else body.password_hash = '';
    await api.put(`/users/${enc(v.name)}`, body);
    await refresh();
  }, 'User added');
  fill(main, h('h1', null, 'Users'), t.el, fold('Add a user', true, add));
  await refresh();
  return { refresh };
}

function permsForm(fixed, ctx, after) {
  return form('set-permission', [
    fixed.user ? field('Virtual host', select('vhost', ctx.vhosts, ctx.vhosts[0])) : field('User', input('user', { required: true })),
    field('Configure regexp', input('configure', { value: '.*' })),
    field('Write regexp', input('write', { value: '.*' })),
    field('Read regexp', input('read', { value: '.*' })),
    h('button', { type: 'submit', class: 'primary' }, 'Set permission'),
  ], async (v) => {
    await api.put(`/permissions/${enc(fixed.vhost || v.vhost)}/${enc(fixed.user || v.user)}`, { configure: v.configure, write: v.write, read: v.read });
    await after();
  }, 'Permission set');
}

function topicForm(fixed, ctx, after) {
  return form('set-topic-permission', [
    fixed.user ? field('Virtual host', select('vhost', ctx.vhosts, ctx.vhosts[0])) : field('User', input('user', { required: true })),
    field('Exchange', input('exchange', { value: 'amq.topic', required: true })),
    field('Write regexp', input('write', { value: '.*' })),
    field('Read regexp', input('read', { value: '.*' })),
    h('button', { type: 'submit', class: 'primary' }, 'Set topic permission'),
  ], async (v) => {
    await api.put(`/topic-permissions/${enc(fixed.vhost || v.vhost)}/${enc(fixed.user || v.user)}`, { exchange: v.exchange, write: v.write, read: v.read });
    await after();
  }, 'Topic permission set');
}

function clearBtn(label, question, path, after) {
  const b = h('button', { type: 'button', class: 'small danger' }, label);
  b.addEventListener('click', async () => {
    if (!(await confirmDialog(question, label))) return;
    await act(null, async () => { await api.del(path); await after(); }, 'Cleared');
  });
  return b;
}

function permTables(perms, topics, other, after) {
  // other: 'vhost' on a user page (show the vhost column), 'user' on a vhost page.
  const otherCell = (p) => (other === 'vhost' ? link(vhostHref(p.vhost), p.vhost) : link(userHref(p.user), p.user));
  return [
    h('h3', null, 'Permissions'),
    staticTable([
      { label: other === 'vhost' ? 'Virtual host' : 'User', render: otherCell },
      { label: 'Configure', render: (p) => p.configure }, { label: 'Write', render: (p) => p.write }, { label: 'Read', render: (p) => p.read },
      { label: 'Action', render: (p) => clearBtn('Clear', `Clear permissions of ${p.user} in ${p.vhost}?`, `/permissions/${enc(p.vhost)}/${enc(p.user)}`, after) },
    ], perms, 'No permissions', { class: 'list permissions' }),
    h('h3', null, 'Topic permissions'),
    staticTable([
      { label: other === 'vhost' ? 'Virtual host' : 'User', render: otherCell },
      { label: 'Exchange', render: (p) => p.exchange }, { label: 'Write', render: (p) => p.write }, { label: 'Read', render: (p) => p.read },
      { label: 'Action', render: (p) => clearBtn('Clear', `Clear topic permissions of ${p.user} in ${p.vhost} on ${p.exchange}?`, `/topic-permissions/${enc(p.vhost)}/${enc(p.user)}/${enc(p.exchange)}`, after) },
    ], topics, 'No topic permissions', { class: 'list topic-permissions' }),
  ];
}

export async function userPage(main, { name }, ctx) {
  const base = `/users/${enc(name)}`;
  const info = h('div');
  const perms = h('div');
  async function refresh() {
    const [u, ps, ts] = await Promise.all([api.get(base), api.get(`${base}/permissions`), api.get(`${base}/topic-permissions`).catch(() => [])]);
    fill(info, section('Details', facts([['Tags', tagText(u.tags) || 'none'], ['Has password', u.password_hash ? 'yes' : 'no'],
      ['Limits', Object.entries(u.limits || {}).map(([k, v]) => `${k}: ${v}`).join(', ') || 'none']])));
    fill(perms, permTables(ps, ts, 'vhost', refresh));
    // The update form starts from the current tags (and returns to them after a reset).
    const tagInput = update.querySelector('[name=tags]');
    if (document.activeElement !== tagInput && tagInput.value === tagInput.defaultValue) tagInput.value = tagInput.defaultValue = tagText(u.tags);
  }
  const update = form('update-user', [
    field('Password', input('password', { type: 'password', autocomplete: 'new-password' }), 'Leave empty to keep the current password.'),
    tagsField('update-user-tags'),
    h('button', { type: 'submit', class: 'primary' }, 'Update user'),
  ], async (v) => {
    const body = { tags: v.tags };
    if (v.password) body.password = v.password;
    else {
      // A PUT without a password clears it (RabbitMQ's behaviour): keep the stored hash instead.
      const u = await api.get(base);
      body.password_hash = u.password_hash || '';
      if (u.hashing_algorithm) body.hashing_algorithm = u.hashing_algorithm;
    }
    await api.put(base, body);
    await refresh();
  }, 'User updated');
  const del = h('button', { type: 'button', class: 'danger', id: 'delete-user' }, 'Delete user');
  del.addEventListener('click', async () => {
    if (!(await confirmDialog(`Delete user "${name}"?`, 'Delete'))) return;
    const r = await act(null, async () => { await api.del(base); return true; });
    if (r) { notify(`User ${name} deleted`); location.hash = '#/users'; }
  });
  fill(main, h('h1', null, 'User ', h('span', { class: 'name' }, name)), info,
    fold('Permissions', true, perms, h('h3', null, 'Set permission'), permsForm({ user: name }, ctx, refresh),
      h('h3', null, 'Set topic permission'), topicForm({ user: name }, ctx, refresh)),
    fold('Update this user', false, update),
    fold('Delete this user', false, h('div', { class: 'row' }, del)));
  await refresh();
  return { refresh };
}

export async function vhostsPage(main, _p, ctx) {
  const t = listTable({
    id: 'vhosts', caption: 'Virtual hosts', path: '/vhosts', serverPaged: true, empty: 'No virtual hosts',
    columns: [
      { key: 'name', label: 'Name', render: (v) => link(vhostHref(v.name), v.name) },
      { key: 'description', label: 'Description', hide: true },
      { key: 'tags', label: 'Tags', render: (v) => tagText(v.tags), hide: true },
      { key: 'default_queue_type', label: 'Default queue type', render: (v) => (v.default_queue_type === 'undefined' ? '' : v.default_queue_type) },
      { key: 'cluster_state', label: 'State', sortable: false, render: (v) => Object.values(v.cluster_state || {}).join(', ') },
      { key: 'messages_ready', label: 'Ready', num: true },
      { key: 'messages_unacknowledged', label: 'Unacked', num: true },
      { key: 'messages', label: 'Total', num: true },
      { key: 'message_stats.publish_details.rate', label: 'Publish', num: true, render: (v) => rate(v.message_stats && v.message_stats.publish_details) },
      { key: 'message_stats.deliver_get_details.rate', label: 'Deliver / get', num: true, render: (v) => rate(v.message_stats && v.message_stats.deliver_get_details) },
    ],
  });
  const add = form('add-vhost', [
    field('Name', input('name', { required: true })),
    field('Description', input('description')),
    field('Tags', input('tags', { placeholder: 'comma separated' })),
    field('Default queue type', select('default_queue_type', [['', '(none)'], ['classic', 'Classic'], ['quorum', 'Quorum'], ['stream', 'Stream']], '')),
    h('button', { type: 'submit', class: 'primary' }, 'Add virtual host'),
  ], async (v) => {
    const body = { description: v.description, tags: v.tags };
    // 3.10 reads "defaultqueuetype", later versions "default_queue_type".
    if (v.default_queue_type) { body.default_queue_type = v.default_queue_type; body.defaultqueuetype = v.default_queue_type; }
    await api.put(`/vhosts/${enc(v.name)}`, body);
    await ctx.reloadVhosts();
    await t.refresh();
  }, 'Virtual host added');
  fill(main, h('h1', null, 'Virtual hosts'), t.el, fold('Add a virtual host', true, add));
  await t.refresh();
  return { refresh: t.refresh };
}

export async function vhostPage(main, { name }, ctx) {
  const base = `/vhosts/${enc(name)}`;
  const info = h('div');
  const perms = h('div');
  async function refresh() {
    const [v, ps, ts] = await Promise.all([api.get(base), api.get(`${base}/permissions`), api.get(`${base}/topic-permissions`).catch(() => [])]);
    fill(info, section('Details', facts([
      ['Description', v.description || ''], ['Tags', tagText(v.tags)],
      ['Default queue type', v.default_queue_type === 'undefined' ? '' : v.default_queue_type],
      ['State', Object.entries(v.cluster_state || {}).map(([n, s]) => `${n}: ${s}`).join(', ')],
      ['Messages', num(v.messages ?? 0)], ['Tracing', v.tracing ? 'on' : 'off'],
    ])));
    fill(perms, permTables(ps, ts, 'user', refresh));
  }
  const del = h('button', { type: 'button', class: 'danger', id: 'delete-vhost' }, 'Delete this virtual host');
  del.addEventListener('click', async () => {
    if (!(await confirmDialog(`Delete virtual host "${name}" and everything in it?`, 'Delete'))) return;
    const r = await act(null, async () => { await api.del(base); return true; });
    if (r) { notify(`Virtual host ${name} deleted`); await ctx.reloadVhosts().catch(() => {}); location.hash = '#/vhosts'; }
  });
  fill(main, h('h1', null, 'Virtual host ', h('span', { class: 'name' }, name)), info,
    fold('Permissions', true, perms, h('h3', null, 'Set permission'), permsForm({ vhost: name }, ctx, refresh),
      h('h3', null, 'Set topic permission'), topicForm({ vhost: name }, ctx, refresh)),
    fold('Delete this virtual host', false, h('div', { class: 'row' }, del)));
  await refresh();
  return { refresh };
}
