// Hash routes (`#/campaigns/<id>`): the page and its id.
export type Route = { page: string; id?: string };

export const PAGES = ['dashboard', 'messages', 'campaigns', 'contacts', 'templates', 'channels', 'integrations', 'events', 'media', 'signals', 'api-keys', 'audit-log'] as const;

export function parseRoute(hash: string): Route {
  const [, page, id] = hash.replace(/^#/, '').split('/');
  if (!page || !(PAGES as readonly string[]).includes(page)) return { page: 'dashboard' };
  return id ? { page, id: decodeURIComponent(id) } : { page };
}
