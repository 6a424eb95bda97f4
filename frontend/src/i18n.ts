// Spanish and English: the language comes from the user's earlier choice, else the browser's;
// numbers and dates go through Intl in that language. Every string the pages show is a key of
// the catalogues in ./locales (a test fails on a key one of them lacks).
import i18next from 'i18next';
import { en } from './locales/en';
import { es } from './locales/es';

export const languages = ['es', 'en'] as const;
export type Language = (typeof languages)[number];
const STORE = 'pregonero.lang';

/** The language to start in: the saved choice, else the first of the browser's we speak. */
export function pickLanguage(saved: string | null, preferred: readonly string[]): Language {
  if (saved === 'es' || saved === 'en') return saved;
  for (const tag of preferred) {
    const base = tag.toLowerCase().split('-')[0];
    if (base === 'es' || base === 'en') return base;
  }
  return 'en';
}

const initial = pickLanguage(
  typeof localStorage === 'undefined' ? null : localStorage.getItem(STORE),
  typeof navigator === 'undefined' ? [] : navigator.languages ?? [navigator.language],
);

i18next.init({
  lng: initial,
  fallbackLng: false,
  resources: { en: { translation: en }, es: { translation: es } },
  interpolation: { escapeValue: false },
  returnNull: false,
  initAsync: false,
} as any);
if (typeof document !== 'undefined') document.documentElement.lang = initial;

export const t = (key: string, options?: Record<string, unknown>): string => i18next.t(key, options as any) as string;
export const lang = (): Language => (i18next.language as Language) || 'en';

export function setLanguage(l: Language) {
  i18next.changeLanguage(l);
  localStorage.setItem(STORE, l);
  document.documentElement.lang = l;
}

export const fmtNumber = (n: number | null | undefined, digits = 0) =>
  n === null || n === undefined ? '—' : new Intl.NumberFormat(lang(), { maximumFractionDigits: digits }).format(n);
export const fmtPercent = (n: number) =>
  new Intl.NumberFormat(lang(), { style: 'percent', maximumFractionDigits: 1 }).format(n / 100);
export const fmtDate = (s: string | null | undefined) =>
  s ? new Intl.DateTimeFormat(lang(), { dateStyle: 'short', timeStyle: 'medium' }).format(new Date(s)) : '—';
export const fmtDay = (s: string) =>
  new Intl.DateTimeFormat(lang(), { day: 'numeric', month: 'short' }).format(new Date(`${s}T00:00:00`));
export const fmtBytes = (n: number) =>
  n < 1024 ? `${fmtNumber(n)} B` : n < 1048576 ? `${fmtNumber(n / 1024, 1)} KB` : `${fmtNumber(n / 1048576, 1)} MB`;

/** An API error in the user's language: its stable code's text, else the server's message. */
export function errorText(e: unknown): string {
  const err = e as { code?: string; message?: string };
  if (err?.code && i18next.exists(`errors.${err.code}`)) {
    // Which fields are wrong is in the server's message.
    return err.code === 'validation-failed' && err.message ? `${t(`errors.${err.code}`)} ${err.message}` : t(`errors.${err.code}`);
  }
  return err?.message || t('errors.unknown');
}
