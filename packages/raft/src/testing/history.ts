/**
 * Parsing and validation of a client history file (the `rdl-lincheck` input format): a JSON array of
 * `{"client": 1, "op": "write" | "read", "key": "k", "value": "v" | null, "call": <number>,
 * "return": <number> | null}`.
 */
import type { HistoryOperation } from './lincheck.js';

/** The outcome of {@link parseHistory}: the operations, or the first problem found, naming the entry and field. */
export type ParseHistoryResult =
  { readonly ok: true; readonly history: HistoryOperation[] } | { readonly ok: false; readonly message: string };

const fields = new Set(['client', 'op', 'key', 'value', 'call', 'return']);

/**
 * Validates an already JSON-parsed value as a history. Never throws: a malformed input yields
 * `{ ok: false, message }` where the message names the entry index and the field at fault.
 */
export function parseHistory(input: unknown): ParseHistoryResult {
  if (!Array.isArray(input)) return { ok: false, message: `history must be a JSON array, got ${typeName(input)}` };
  const history: HistoryOperation[] = [];
  for (let index = 0; index < input.length; index++) {
    const entry: unknown = input[index];
    const at = `entry ${index}`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      return { ok: false, message: `${at}: must be an object, got ${typeName(entry)}` };
    }
    const e = entry as Record<string, unknown>;
    for (const name of Object.keys(e)) {
      if (!fields.has(name)) return { ok: false, message: `${at}: unknown field "${name}"` };
    }
    for (const name of fields) {
      if (!(name in e)) return { ok: false, message: `${at}: missing field "${name}"` };
    }
    const { client, op, key, value, call } = e;
    const ret = e.return;
    if (!(typeof client === 'string' || (typeof client === 'number' && Number.isFinite(client)))) {
      return { ok: false, message: `${at}: field "client" must be a number or a string, got ${typeName(client)}` };
    }
    if (op !== 'write' && op !== 'read') {
      return { ok: false, message: `${at}: field "op" must be "write" or "read", got ${JSON.stringify(op)}` };
    }
    if (typeof key !== 'string')
      return { ok: false, message: `${at}: field "key" must be a string, got ${typeName(key)}` };
    if (op === 'write' && typeof value !== 'string') {
      return { ok: false, message: `${at}: field "value" of a write must be a string, got ${typeName(value)}` };
    }
    if (op === 'read' && !(typeof value === 'string' || value === null)) {
      return { ok: false, message: `${at}: field "value" of a read must be a string or null, got ${typeName(value)}` };
    }
    if (typeof call !== 'number' || !Number.isFinite(call)) {
      return { ok: false, message: `${at}: field "call" must be a finite number, got ${typeName(call)}` };
    }
    if (ret !== null && (typeof ret !== 'number' || !Number.isFinite(ret))) {
      return { ok: false, message: `${at}: field "return" must be a finite number or null, got ${typeName(ret)}` };
    }
    if (ret !== null && ret < call) {
      return { ok: false, message: `${at}: field "return" (${ret}) is before "call" (${call})` };
    }
    history.push({ client, op, key, value: value as string | null, call, return: ret });
  }
  return { ok: true, history };
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string')
    return `the string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)}`;
  if (typeof value === 'number') return `the number ${value}`;
  return `a ${typeof value}`;
}
