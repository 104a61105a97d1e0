import { ClientCode, RdlError } from './errors.js';

const units: Readonly<Record<string, number>> = Object.freeze({
  '': 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1000 ** 4,
  tib: 1024 ** 4,
  p: 1024 ** 5,
  pb: 1000 ** 5,
  pib: 1024 ** 5,
});

/**
 * Parses a size such as `4096`, `64MiB`, `1.5 GiB`, `10G` (single letters and IEC units are
 * binary, `KB`/`MB`/... decimal; case-insensitive). The result must be a whole safe integer of
 * bytes, else `CLIENT_USAGE`.
 */
export function parseSize(text: string): number {
  const match = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$/.exec(text);
  const unit = match === null ? undefined : units[match[2].toLowerCase()];
  if (match === null || unit === undefined) {
    throw new RdlError(ClientCode.CLIENT_USAGE, `cannot parse size ${JSON.stringify(text)} (try 64MiB, 1GiB, 4096)`);
  }
  const bytes = Number(match[1]) * unit;
  if (!Number.isSafeInteger(bytes)) {
    throw new RdlError(ClientCode.CLIENT_USAGE, `size ${JSON.stringify(text)} is not a whole number of bytes`);
  }
  return bytes;
}

/** Formats bytes with the largest binary unit that keeps at least 1 (`64 MiB`, `4.5 GiB`, `512 B`). */
export function formatSize(bytes: number): string {
  const names = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let index = 0;
  while (value >= 1024 && index < names.length - 1) {
    value /= 1024;
    index++;
  }
  const text = index === 0 || Number.isInteger(value) ? String(value) : value.toFixed(1).replace(/\.0$/, '');
  return `${text} ${names[index]}`;
}
