// CSV import helpers: read the first rows in the browser, guess which column is which, and
// rewrite only the header line to the names the server reads (nombre, sustantivo, grupo,
// telefono; other columns stay attributes), so a file of any size is sent as it is.

export const FIELDS = ['telefono', 'nombre', 'sustantivo', 'grupo', 'telegram_chat_id'] as const;
export type Field = (typeof FIELDS)[number];
/** A column's destination: one of FIELDS, `attr:<name>` (kept as an attribute) or `skip`. */
export type Target = Field | `attr:${string}` | 'skip';

const ALIASES: Record<Field, string[]> = {
  // The server's own names (src/contacts/csv_reader.rs), plus a few it would keep as attributes.
  telefono: ['telefono', 'phone', 'phone_number', 'tel', 'movil', 'celular', 'mobile', 'numero', 'whatsapp', 'msisdn', 'telefono_movil'],
  nombre: ['nombre', 'name', 'full_name', 'nombre_completo'],
  sustantivo: ['sustantivo', 'noun', 'tratamiento', 'salutation'],
  grupo: ['grupo', 'group', 'segmento', 'segment'],
  telegram_chat_id: ['telegram_chat_id', 'chat_id', 'telegram'],
};

/** `,`, `;` (spreadsheets in Spanish save with `;`) or tab, whichever the header line has
 *  most of (as the server picks it). */
export function delimiter(headerLine: string): string {
  const count = (c: string) => headerLine.split(c).length;
  return [';', '\t'].reduce((best, c) => (count(c) > count(best) ? c : best), ',');
}

/** Splits CSV text into rows (quotes, doubled quotes, CRLF); stops after `maxRows`. */
export function parseRows(text: string, sep: string, maxRows = Infinity): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length && rows.length < maxRows; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"' && cell === '') quoted = true;
    else if (c === sep) {
      row.push(cell);
      cell = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
    } else cell += c;
  }
  if ((cell !== '' || row.length) && rows.length < maxRows) {
    row.push(cell);
    rows.push(row);
  }
  return rows;
}

const norm = (s: string) => s.trim().toLowerCase().normalize('NFD').replace(/[\u0300-\u036f]/g, '').replace(/[\s-]+/g, '_');

/** A first guess for each header: a known field by name, else an attribute of the same name. */
export function guessMapping(headers: string[]): Target[] {
  const used = new Set<Field>();
  return headers.map((h) => {
    const n = norm(h);
    for (const f of FIELDS) {
      if (!used.has(f) && ALIASES[f].some((a) => norm(a) === n)) {
        used.add(f);
        return f;
      }
    }
    return n ? (`attr:${n}` as Target) : 'skip';
  });
}

/** What is wrong with a mapping, as catalogue keys: no phone column, a field used twice. */
export function mappingProblems(mapping: Target[]): string[] {
  const problems: string[] = [];
  if (!mapping.includes('telefono')) problems.push('contacts.mapping.noPhone');
  const fields = mapping.filter((m) => (FIELDS as readonly string[]).includes(m));
  if (new Set(fields).size !== fields.length) problems.push('contacts.mapping.duplicate');
  return problems;
}

const quote = (s: string, sep: string) => (/["\r\n]/.test(s) || s.includes(sep) ? `"${s.replace(/"/g, '""')}"` : s);

/** The header line the server reads for `mapping`; skipped columns get a name it ignores. */
export function headerLine(mapping: Target[], sep: string): string {
  return mapping
    .map((m, i) => (m === 'skip' ? `_skip_${i}` : m.startsWith('attr:') ? m.slice(5) : m))
    .map((h) => quote(h, sep))
    .join(sep);
}

/** Byte length of the first line (with its line break) of `bytes`, quotes respected. */
export function firstLineEnd(bytes: Uint8Array): number {
  let quoted = false;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (b === 0x22) quoted = !quoted;
    else if (!quoted && b === 0x0a) return i + 1;
  }
  return bytes.length;
}
