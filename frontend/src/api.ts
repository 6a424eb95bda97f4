// The server's REST API, as the dashboard uses it: JSON in and out, the session cookie, and the
// session's CSRF token on every change. Errors carry the API's stable code (`error`).

export interface Me {
  user_id: string;
  name: string;
  role: 'admin' | 'operator' | 'viewer' | string;
  csrf_token?: string;
}

export interface Page<T> {
  items: T[];
  next_cursor?: string | null;
}

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string | undefined,
    readonly data: any,
  ) {
    super(message);
  }
}

let csrf: string | undefined;

/** Remembers the session's CSRF token (from `GET /auth/me`). */
export function setCsrf(token: string | undefined) {
  csrf = token;
}

/** Fired on `window` when a call is answered 401 (the session ended): the shell signs out. */
export const UNAUTHORIZED = 'pregonero:unauthorized';

async function answer<T>(res: Response): Promise<T> {
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) {
    if (res.status === 401 && !new URL(res.url, location.origin).pathname.startsWith('/auth/')) {
      window.dispatchEvent(new Event(UNAUTHORIZED));
    }
    throw new ApiError(data?.message || res.statusText, res.status, data?.error, data);
  }
  return data as T;
}

export async function api<T = any>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  return answer<T>(res);
}

/** Sends a file (or any body) as the raw request body: media, CSV imports. */
export async function upload<T = any>(path: string, file: Blob, contentType?: string): Promise<T> {
  const res = await fetch(path, {
    method: 'POST',
    credentials: 'same-origin',
    body: file,
    headers: {
      Accept: 'application/json',
      'Content-Type': contentType || file.type || 'application/octet-stream',
      'X-CSRF-Token': csrf ?? '',
    },
  });
  return answer<T>(res);
}

/** Sends a multipart form (the seed's `POST /send-messages`). */
export async function postForm<T = any>(path: string, form: FormData): Promise<T> {
  const res = await fetch(path, {
    method: 'POST',
    credentials: 'same-origin',
    body: form,
    headers: { Accept: 'application/json', 'X-CSRF-Token': csrf ?? '' },
  });
  return answer<T>(res);
}

/** Builds a query string, leaving out empty values. */
export function query(params: Record<string, string | number | boolean | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** Every page of a list, for exports (bounded: at most `max` rows). */
export async function all<T>(path: string, max = 100_000): Promise<T[]> {
  const rows: T[] = [];
  let cursor: string | null | undefined;
  const sep = path.includes('?') ? '&' : '?';
  do {
    const page: Page<T> = await api('GET', `${path}${sep}limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    rows.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && rows.length < max);
  return rows;
}
