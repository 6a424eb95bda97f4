// Small building blocks every page uses.
import type { ButtonHTMLAttributes, ComponentChildren, JSX } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { encode } from 'uqr';
import { errorText, t } from './i18n';
import * as live from './live';

export function ErrorBox({ error }: { error: unknown }) {
  if (!error) return null;
  return (
    <p class="error" role="alert">
      {errorText(error)}
    </p>
  );
}

export function Kpi({ label, value, id }: { label: string; value: ComponentChildren; id?: string }) {
  return (
    <div class="kpi" id={id}>
      <span class="muted">{label}</span>
      <strong>{value}</strong>
    </div>
  );
}

export function Table({ id, headers, children, empty }: { id?: string; headers: string[]; children: ComponentChildren; empty?: string | false }) {
  const rows = Array.isArray(children) ? children.flat() : children ? [children] : [];
  return (
    // Focusable, so a keyboard can scroll a table wider than a phone.
    <div class="table-wrap" tabIndex={0}>
      <table id={id}>
        <thead>
          <tr>
            {headers.map((h) => (
              <th scope="col">{h}</th>
            ))}
          </tr>
        </thead>
        <tbody>{children}</tbody>
      </table>
      {empty && rows.length === 0 ? <p class="empty muted">{empty}</p> : null}
    </div>
  );
}

export function Field({ label, children, wide }: { label: string; children: ComponentChildren; wide?: boolean }) {
  return (
    <label class={wide ? 'wide' : undefined}>
      {label}
      {children}
    </label>
  );
}

/** A button that asks first (`window.confirm` keeps it keyboard and screen-reader friendly). */
export function ConfirmButton({ question, onConfirm, children, ...rest }: { question: string; onConfirm: () => void } & ButtonHTMLAttributes<HTMLButtonElement>) {
  return (
    <button type="button" {...rest} onClick={() => window.confirm(question) && onConfirm()}>
      {children}
    </button>
  );
}

/** A secret shown once (new keys, tokens), selectable in one click. */
export function ShownOnce({ id, text, children }: { id?: string; text: string; children?: ComponentChildren }) {
  return (
    <div class="token" id={id}>
      <p>{text}</p>
      {children}
    </div>
  );
}

/** A QR code drawn as SVG rectangles (no image URL, so the strict CSP allows it). */
export function Qr({ value, size = 180, label }: { value: string; size?: number; label: string }) {
  const { data } = encode(value, { ecc: 'M', border: 2 });
  const n = data.length;
  const cells: JSX.Element[] = [];
  data.forEach((row, y) => row.forEach((on, x) => on && cells.push(<rect x={x} y={y} width={1} height={1} />)));
  return (
    <svg class="qr" role="img" aria-label={label} viewBox={`0 0 ${n} ${n}`} width={size} height={size} shape-rendering="crispEdges">
      <rect width={n} height={n} fill="#fff" />
      <g fill="#000">{cells}</g>
    </svg>
  );
}

/** Loads `load()` once (and again when `deps` change); `reload` runs it again. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[] = []) {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const alive = useRef(true);
  const reload = async () => {
    try {
      const d = await load();
      if (alive.current) {
        setData(d);
        setError(null);
      }
    } catch (e) {
      if (alive.current) setError(e);
    }
  };
  useEffect(() => {
    alive.current = true;
    reload();
    return () => {
      alive.current = false;
    };
  }, deps);
  return { data, error, reload, setData };
}

/** Runs `fn` every `ms` while the component is shown; a failed run is retried, never stops it. */
export function useEvery(ms: number | null, fn: () => void) {
  const saved = useRef(fn);
  saved.current = fn;
  useEffect(() => {
    if (ms === null) return;
    const id = setInterval(() => saved.current(), ms);
    return () => clearInterval(id);
  }, [ms]);
}

export const Loading = () => <p class="muted" aria-busy="true">{t('common.loading')}</p>;

/** Turns rows into a CSV download. */
export function downloadCsv(filename: string, rows: (string | number | null | undefined)[][]) {
  const cell = (v: string | number | null | undefined) => {
    const s = v === null || v === undefined ? '' : String(v);
    return /[",\n\r;]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  const blob = new Blob([rows.map((r) => r.map(cell).join(',')).join('\r\n') + '\r\n'], { type: 'text/csv' });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = filename;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

/** Calls `reload` when a live `name` event that `wanted` accepts arrives, at most once per
 *  `ms` (a burst of sends is one refresh). */
export function useLiveReload(name: string, reload: () => void, wanted: (data: any) => boolean = () => true, deps: unknown[] = [], ms = 300) {
  const latest = useRef(reload);
  latest.current = reload;
  useEffect(() => {
    let pending: ReturnType<typeof setTimeout> | undefined;
    const off = live.on(name, (data) => {
      if (!wanted(data)) return;
      pending ??= setTimeout(() => {
        pending = undefined;
        latest.current();
      }, ms);
    });
    return () => {
      off();
      clearTimeout(pending);
    };
  }, deps);
}

/** An action's runner: its error goes to `setFailure`; success clears it and calls `after`. */
export function runner(setFailure: (e: unknown) => void, after?: () => unknown) {
  return async (fn: () => Promise<unknown>) => {
    try {
      await fn();
      setFailure(null);
      await after?.();
    } catch (e) {
      setFailure(e);
    }
  };
}
