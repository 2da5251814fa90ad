// Bindings tables with unbind buttons, and the add-binding forms (queue page, exchange page).
import { api } from '../api.js';
import { h, enc, kv, exchangeLabel, exchangeHref, queueHref, link } from '../dom.js';
import { staticTable } from '../table.js';
import { act, confirmDialog, form, field, input, select, kvEditor } from '../widgets.js';

function bindingPath(b) {
  const kind = b.destination_type === 'exchange' ? 'e' : 'q';
  return `/bindings/${enc(b.vhost)}/e/${enc(b.source)}/${kind}/${enc(b.destination)}/${enc(b.properties_key)}`;
}

function destLink(b) {
  return b.destination_type === 'exchange'
    ? link(exchangeHref(b.vhost, b.destination), exchangeLabel(b.destination))
    : link(queueHref(b.vhost, b.destination), b.destination);
}

/** side: 'source' lists the source exchange (queue page, exchange "from" bindings); 'destination' lists where it goes. */
export function bindingsTable(bindings, side, onChange) {
  const unbind = (b) => {
    if (b.source === '') return h('span', { class: 'muted' }, '(default binding)');
    const btn = h('button', { type: 'button', class: 'small danger' }, 'Unbind');
    btn.addEventListener('click', async () => {
      if (!(await confirmDialog(`Remove the binding from ${exchangeLabel(b.source)} to ${b.destination} with key "${b.routing_key}"?`, 'Unbind'))) return;
      await act(null, async () => { await api.del(bindingPath(b)); await onChange(); }, 'Binding removed');
    });
    return btn;
  };
  const cols = [
    side === 'source'
      ? { label: 'From', render: (b) => (b.source === '' ? '(AMQP default)' : link(exchangeHref(b.vhost, b.source), b.source)) }
      : { label: 'To', render: destLink },
    side === 'destination' ? { label: 'Type', render: (b) => b.destination_type } : null,
    { label: 'Routing key', render: (b) => b.routing_key },
    { label: 'Arguments', render: (b) => kv(b.arguments) },
    { label: 'Action', render: unbind },
  ].filter(Boolean);
  return staticTable(cols, bindings, 'No bindings', { class: 'list bindings' });
}

/**
 * Form to add a binding. fixed: {vhost, queue} (queue page: pick source exchange),
 * or {vhost, source} (exchange page: pick destination queue or exchange), or {vhost, destinationExchange}.
 */
export function bindForm(fixed, onChange) {
  let fields;
  if (fixed.queue !== undefined) fields = [field('From exchange', input('source', { required: true }))];
  else if (fixed.source !== undefined) {
    fields = [
      field('To', select('dtype', [['q', 'Queue'], ['e', 'Exchange']], 'q')),
      field('Destination name', input('destination', { required: true })),
    ];
  } else fields = [field('From exchange', input('source', { required: true }))];
  return form('bind', [
    ...fields,
    field('Routing key', input('routing_key')),
    kvEditor('arguments', 'Arguments'),
    h('button', { type: 'submit', class: 'primary' }, 'Bind'),
  ], async (v) => {
    let src; let kind; let dst;
    if (fixed.queue !== undefined) { src = v.source; kind = 'q'; dst = fixed.queue; }
    else if (fixed.source !== undefined) { src = fixed.source; kind = v.dtype; dst = v.destination; }
    else { src = v.source; kind = 'e'; dst = fixed.destinationExchange; }
    await api.post(`/bindings/${enc(fixed.vhost)}/e/${enc(src)}/${kind}/${enc(dst)}`, { routing_key: v.routing_key, arguments: v.arguments });
    await onChange();
  }, 'Binding added');
}
