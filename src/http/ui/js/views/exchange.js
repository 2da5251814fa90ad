// One exchange: rates chart, details, bindings from it and to it, publish, delete.
import { api } from '../api.js';
import { h, fill, enc, kv, facts, section, fold, exchangeLabel } from '../dom.js';
import { rateChart, samples, rangeSelect } from '../chart.js';
import { act, confirmDialog, notify } from '../widgets.js';
import { features } from './lists.js';
import { bindingsTable, bindForm } from './bindings.js';
import { publishForm } from './messages.js';

export async function exchangePage(main, { vhost, name: pathName }) {
  const name = pathName === 'amq.default' ? '' : pathName;
  const base = `/exchanges/${enc(vhost)}/${enc(pathName === '' ? 'amq.default' : pathName)}`;
  const info = h('div', { id: 'exchange-info' });
  const out = h('div');
  const inn = h('div');
  async function refreshBindings() {
    const [src, dst] = await Promise.all([api.get(`${base}/bindings/source`), api.get(`${base}/bindings/destination`)]);
    fill(out, bindingsTable(src, 'destination', refreshBindings));
    fill(inn, bindingsTable(dst, 'source', refreshBindings));
  }
  async function refresh() {
    const x = await api.get(`${base}?${samples()}`);
    fill(info, h('div', { class: 'charts' },
      section('Message rates', rateChart('Message rates', x.message_stats, [['publish_in', 'Publish in'], ['publish_out', 'Publish out']])),
      section('Details', facts([
        ['Type', x.type], ['Features', features(x)], ['Arguments', kv(x.arguments)], ['Policy', x.policy || ''],
      ]))));
    await refreshBindings();
  }
  const builtin = name === '' || name.startsWith('amq.');
  const del = h('button', { type: 'button', class: 'danger', id: 'delete-exchange' }, 'Delete exchange');
  const ifUnused = h('input', { type: 'checkbox' });
  del.addEventListener('click', async () => {
    if (!(await confirmDialog(`Delete exchange "${name}" in virtual host "${vhost}"?`, 'Delete'))) return;
    const r = await act(del.parentElement, async () => { await api.del(`${base}${ifUnused.checked ? '?if-unused=true' : ''}`); return true; });
    if (r) { notify(`Exchange ${name} deleted`); location.hash = '#/exchanges'; }
  });
  fill(main,
    h('div', { class: 'page-head' }, h('h1', null, 'Exchange ', h('span', { class: 'name' }, exchangeLabel(name)), h('span', { class: 'sub' }, ` in virtual host ${vhost}`)), rangeSelect(() => refresh())),
    info,
    fold('Bindings', true,
      h('h3', null, 'From this exchange'), out,
      name === '' ? h('p', { class: 'hint' }, 'The default exchange routes to every queue by its name; it cannot be bound.')
        : [h('h3', null, 'Add binding from this exchange'), bindForm({ vhost, source: name }, refreshBindings)],
      h('h3', null, 'To this exchange'), inn,
      name === '' ? null : [h('h3', null, 'Add binding to this exchange'), bindForm({ vhost, destinationExchange: name }, refreshBindings)]),
    fold('Publish message', false, publishForm(vhost, name)),
    builtin ? null : fold('Delete this exchange', false, h('div', { class: 'row' }, h('label', { class: 'inline' }, ifUnused, ' only if unused'), del)));
  await refresh();
  return { refresh };
}
