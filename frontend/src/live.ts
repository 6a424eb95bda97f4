// The server's live updates (`GET /api/v1/live`, server-sent events), shared by every page:
// one EventSource per tab; pages subscribe to event names. The state (`connecting`, `open`,
// `reconnecting`) is shown in the header, so a page never looks live while it is not.
export type LiveState = 'connecting' | 'open' | 'reconnecting' | 'closed';
type Handler = (data: any) => void;

let source: EventSource | null = null;
let state: LiveState = 'closed';
const handlers = new Map<string, Set<Handler>>();
const watchers = new Set<(s: LiveState) => void>();
let retry: ReturnType<typeof setTimeout> | undefined;
let failures = 0;

function set(s: LiveState) {
  state = s;
  watchers.forEach((w) => w(s));
}

function attach(name: string) {
  source?.addEventListener(name, (ev) => {
    let data: unknown = null;
    try {
      data = JSON.parse((ev as MessageEvent).data);
    } catch {
      return;
    }
    handlers.get(name)?.forEach((h) => h(data));
  });
}

/** Opens the stream (after sign-in); reconnects with a capped backoff when it drops. */
export function connect() {
  if (source) return;
  set(failures ? 'reconnecting' : 'connecting');
  source = new EventSource('/api/v1/live', { withCredentials: true });
  for (const name of handlers.keys()) attach(name);
  source.onopen = () => {
    failures = 0;
    set('open');
  };
  source.onerror = () => {
    // The browser retries by itself only for some failures; do it ourselves, always.
    source?.close();
    source = null;
    failures += 1;
    set('reconnecting');
    clearTimeout(retry);
    retry = setTimeout(connect, Math.min(30_000, 500 * 2 ** Math.min(failures, 6)));
  };
}

export function disconnect() {
  clearTimeout(retry);
  source?.close();
  source = null;
  failures = 0;
  set('closed');
}

/** Calls `fn` for each `name` event until the returned function is called. */
export function on(name: string, fn: Handler): () => void {
  if (!handlers.has(name)) {
    handlers.set(name, new Set());
    attach(name);
  }
  handlers.get(name)!.add(fn);
  return () => handlers.get(name)?.delete(fn);
}

export function watchState(fn: (s: LiveState) => void): () => void {
  watchers.add(fn);
  fn(state);
  return () => watchers.delete(fn);
}
