import { describe, expect, it } from 'vitest';
import { query } from './api';
import { parseRoute } from './routes';
import { contactVars, insertVariable, renderDraft } from './template';

describe('draft preview', () => {
  const vars = contactVars({ name: 'Ana', noun: 'Sra.', group: null, phone: '+34600000001', attributes: { ciudad: 'Vigo' } });
  it('fills simple variables, spaces or not', () => {
    expect(renderDraft('Hola {{ sustantivo }} {{nombre}} de {{ ciudad }}', vars)).toEqual({ text: 'Hola Sra. Ana de Vigo', missing: [] });
  });
  it('lists what the contact lacks and leaves it as written', () => {
    expect(renderDraft('{{ grupo }} {{ nombre }}', vars)).toEqual({ text: '{{ grupo }} Ana', missing: ['grupo'] });
  });
  it('inserts a variable at the caret', () => {
    expect(insertVariable('Hola !', 5, 5, 'nombre')).toEqual({ body: 'Hola {{ nombre }}!', caret: 17 });
    expect(insertVariable('Hola XX', 5, 7, 'nombre').body).toBe('Hola {{ nombre }}');
  });
});

describe('routes', () => {
  it('reads a page and an id', () => expect(parseRoute('#/campaigns/abc')).toEqual({ page: 'campaigns', id: 'abc' }));
  it('sends anything unknown to the dashboard', () => {
    expect(parseRoute('')).toEqual({ page: 'dashboard' });
    expect(parseRoute('#/nope')).toEqual({ page: 'dashboard' });
  });
});

describe('query', () => {
  it('leaves out empty values and encodes the rest', () => {
    expect(query({ q: 'a b', group: '', cursor: undefined, limit: 50, x: null })).toBe('?q=a+b&limit=50');
    expect(query({})).toBe('');
  });
});
