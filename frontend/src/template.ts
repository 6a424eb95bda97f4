// A draft template's live preview in the browser: `{{ name }}` (with optional spaces) becomes
// the contact's value; anything more (Jinja `{% if %}`, filters) is left as written, and the
// server's preview of the saved template is the exact text.

export type Vars = Record<string, string>;

export function contactVars(c: { name: string | null; noun: string | null; group: string | null; phone: string; attributes?: Record<string, string> }): Vars {
  const v: Vars = { ...(c.attributes ?? {}), telefono: c.phone };
  if (c.name) v.nombre = c.name;
  if (c.noun) v.sustantivo = c.noun;
  if (c.group) v.grupo = c.group;
  return v;
}

/** The draft rendered for `vars`, and the simple variables it uses that `vars` lacks. */
export function renderDraft(body: string, vars: Vars): { text: string; missing: string[] } {
  const missing = new Set<string>();
  const text = body.replace(/\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g, (whole, name: string) => {
    if (name in vars) return vars[name];
    missing.add(name);
    return whole;
  });
  return { text, missing: [...missing] };
}

/** `body` with `{{ name }}` inserted at the caret (`start`–`end` replaced). */
export function insertVariable(body: string, start: number, end: number, name: string): { body: string; caret: number } {
  const token = `{{ ${name} }}`;
  return { body: body.slice(0, start) + token + body.slice(end), caret: start + token.length };
}
