/**
 * `rdl-lincheck HISTORY.json`: checks a client history for linearizability.
 * Exit codes: 0 linearizable; 1 not linearizable (the key and a minimal window are printed);
 * 2 malformed input or unreadable file (the entry and field at fault are printed);
 * 3 inconclusive (the search budget ran out).
 */
import { Command, InvalidArgumentError } from 'commander';
import { readFileSync } from 'node:fs';
import { parseHistory } from './history.js';
import { checkLinearizable } from './lincheck.js';

function parsePositiveInteger(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

const program = new Command()
  .name('rdl-lincheck')
  .description('Checks a key-value history (JSON array of operations) for linearizability.')
  .argument(
    '<history>',
    'JSON file: [{"client":1,"op":"write"|"read","key":"k","value":"v"|null,"call":0,"return":1|null}]',
  )
  .option('--steps-max <n>', 'search steps per key before giving up (exit 3)', parsePositiveInteger, 2_000_000)
  .exitOverride((err) => {
    // Usage errors (missing argument, bad option) are malformed input too.
    process.exit(err.exitCode === 0 ? 0 : 2);
  })
  .action((file: string, options: { stepsMax: number }) => {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      process.stderr.write(`rdl-lincheck: cannot read ${file}: ${(err as Error).message}\n`);
      process.exit(2);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      process.stderr.write(`rdl-lincheck: ${file} is not valid JSON: ${(err as Error).message}\n`);
      process.exit(2);
    }
    const parsed = parseHistory(json);
    if (!parsed.ok) {
      process.stderr.write(`rdl-lincheck: malformed history ${file}: ${parsed.message}\n`);
      process.exit(2);
    }
    const result = checkLinearizable(parsed.history, { stepsMax: options.stepsMax });
    if (result.ok) {
      process.stdout.write(`linearizable: ${parsed.history.length} operations\n`);
      process.exit(0);
    }
    if (result.kind === 'inconclusive') {
      process.stdout.write(`inconclusive: ${result.explanation}\n`);
      process.exit(3);
    }
    process.stdout.write(`not linearizable: key ${JSON.stringify(result.key)}\n${result.explanation}\n`);
    process.exit(1);
  });

program.parse();
