import { describe, expect, it } from 'vitest';
import { pickLanguage } from './i18n';
import { en } from './locales/en';
import { es } from './locales/es';

type Tree = { [k: string]: string | Tree };
const flatten = (tree: Tree, prefix = ''): Record<string, string> =>
  Object.entries(tree).reduce<Record<string, string>>((acc, [k, v]) => {
    const key = prefix ? `${prefix}.${k}` : k;
    return typeof v === 'string' ? { ...acc, [key]: v } : { ...acc, ...flatten(v, key) };
  }, {});
const EN = flatten(en);
const ES = flatten(es);

// Every source file of the dashboard, as text.
const sources = import.meta.glob(['./**/*.ts', './**/*.tsx', '!./**/*.test.ts'], { query: '?raw', import: 'default', eager: true }) as Record<string, string>;

describe('catalogues', () => {
  it('have the same keys in both languages', () => {
    expect(Object.keys(ES).sort()).toEqual(Object.keys(EN).sort());
  });

  it('have no empty text', () => {
    for (const [k, v] of [...Object.entries(EN), ...Object.entries(ES)]) expect(v.trim(), k).not.toBe('');
  });

  it('use the same placeholders in both languages', () => {
    const placeholders = (s: string) => [...s.matchAll(/\{\{(\w+)\}\}/g)].map((m) => m[1]).sort();
    for (const k of Object.keys(EN)) expect(placeholders(ES[k]), k).toEqual(placeholders(EN[k]));
  });

  it('hold every key the pages ask for', () => {
    const used = new Set<string>();
    for (const text of Object.values(sources)) {
      for (const m of text.matchAll(/\bt\(\s*'([a-zA-Z][\w.-]*)'/g)) used.add(m[1]);
      // Keys named in lists (navigation, CSV problems): quoted `area.key` strings.
      for (const m of text.matchAll(/'((?:nav|contacts\.mapping)\.[a-zA-Z]+)'/g)) used.add(m[1]);
    }
    expect(used.size).toBeGreaterThan(150);
    const missing = [...used].filter((k) => !(k in EN) || !(k in ES));
    expect(missing).toEqual([]);
  });

  it('translate every value a page looks up by name', () => {
    const groups: [string, string[]][] = [
      ['campaigns.status', ['draft', 'preparing', 'scheduled', 'running', 'paused', 'completed', 'cancelled']],
      ['campaigns.counters', ['total', 'pending', 'queued', 'sent', 'delivered', 'read', 'failed', 'skipped']],
      ['channels.kinds', ['whatsapp_cloud', 'telegram', 'webhook']],
      ['contacts.fields', ['telefono', 'nombre', 'sustantivo', 'grupo', 'telegram_chat_id', 'attribute', 'skip']],
      ['signals.results', ['pending', 'win', 'loss', 'skip']],
      ['live', ['connecting', 'reconnecting']],
    ];
    for (const [prefix, names] of groups) for (const n of names) expect(ES[`${prefix}.${n}`], `${prefix}.${n}`).toBeTruthy();
  });
});

describe('pickLanguage', () => {
  it('keeps a saved choice', () => expect(pickLanguage('en', ['es-ES'])).toBe('en'));
  it('takes the first browser language it speaks', () => expect(pickLanguage(null, ['fr-FR', 'es-MX', 'en'])).toBe('es'));
  it('falls back to English', () => expect(pickLanguage(null, ['de-DE'])).toBe('en'));
  it('ignores a saved value it does not know', () => expect(pickLanguage('xx', ['es'])).toBe('es'));
});
