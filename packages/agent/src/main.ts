/**
 * `rdl-agent`: the node agent's command line (commander). Each subcommand lives with its module
 * and registers itself: `nbd` (src/nbd/command.ts) and `csi` (src/csi/command.ts). To add one,
 * export `registerXCommand(program)` from the module and call it here.
 */
import { Command } from 'commander';
import { registerCsiCommand } from './csi/command.js';
import { registerNbdCommand } from './nbd/command.js';

/** Builds the `rdl-agent` program with every subcommand registered. */
export function buildProgram(): Command {
  const program = new Command('rdl-agent')
    .description('rdl node agent: volumes over NBD, and the CSI driver for Kubernetes')
    .version('0.1.0');
  registerNbdCommand(program);
  registerCsiCommand(program);
  return program;
}

await buildProgram().parseAsync(process.argv);
