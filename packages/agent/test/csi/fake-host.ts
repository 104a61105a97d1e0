// Test helper (not a test file): a simulated Linux host behind the CommandRunner interface, so the
// node service can be driven through attach, format, mount and resize on a machine without the
// nbd kernel module. It records every argv it is given, and keeps the host state the real
// commands would change (sysfs pid files, device contents, the mount table) so idempotency and
// recovery paths observe the same facts they would on a real node. Like the kernel NBD client, a
// device's size is fixed when it connects: growing the export later changes nothing until the
// device is disconnected and connected again (the reason rdl's expansion is OFFLINE).
import { mkdirSync, openSync, writeSync, closeSync, rmSync, writeFileSync, existsSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import type { CommandOptions, CommandResult, CommandRunner } from '../../src/csi/command-runner.js';

/** A scripted failure: the first command matching `match` gets `result` (or `error` thrown). */
export interface FakeFailure {
  match: (argv: readonly string[]) => boolean;
  result?: CommandResult;
  error?: Error;
  /** Applies to this many matching calls (default 1). */
  times?: number;
}

export class FakeHost implements CommandRunner {
  readonly calls: string[][] = [];
  readonly mounts = new Map<string, string>();
  readonly readonlyMounts = new Set<string>();
  readonly filesystems = new Map<string, string>();
  readonly connected = new Map<string, string>();
  readonly failures: FakeFailure[] = [];
  readonly sysBlockDir: string;
  readonly devDir: string;
  /** Size the NBD server announces for an export at connect time, by name (default 1 GiB). */
  readonly exportSizes = new Map<string, number>();
  /** Size of each connected device, as the kernel learned it when the device connected. */
  readonly deviceSizes = new Map<string, number>();

  constructor(root: string, devicesCount: number) {
    this.sysBlockDir = join(root, 'sys', 'block');
    this.devDir = join(root, 'dev');
    mkdirSync(this.devDir, { recursive: true });
    for (let index = 0; index < devicesCount; index += 1) {
      mkdirSync(join(this.sysBlockDir, `nbd${index}`), { recursive: true });
      const device = join(this.devDir, `nbd${index}`);
      writeFileSync(device, '');
      truncateSync(device, 1024 * 1024);
    }
  }

  device(index: number): string {
    return join(this.devDir, `nbd${index}`);
  }

  /** Commands run since the last `takeCalls`, as space-joined strings. */
  takeCalls(): string[] {
    const calls = this.calls.splice(0).map((argv) => argv.join(' '));
    return calls;
  }

  /** Simulates a node reboot: every device disconnects and every mount disappears. */
  reboot(): void {
    for (const device of this.connected.keys()) rmSync(this.#pidFile(device), { force: true });
    this.connected.clear();
    this.deviceSizes.clear();
    this.mounts.clear();
    this.readonlyMounts.clear();
  }

  /** Writes non-zero bytes at the start of a device (raw data, no filesystem). */
  scribble(device: string): void {
    const fd = openSync(device, 'r+');
    writeSync(fd, Buffer.from('raw user data'), 0, 13, 4096);
    closeSync(fd);
  }

  #pidFile(device: string): string {
    return join(this.sysBlockDir, device.slice(device.lastIndexOf('/') + 1), 'pid');
  }

  async run(argv: readonly string[], _options?: CommandOptions): Promise<CommandResult> {
    this.calls.push([...argv]);
    const failureIndex = this.failures.findIndex((failure) => failure.match(argv));
    if (failureIndex >= 0) {
      const failure = this.failures[failureIndex];
      failure.times = (failure.times ?? 1) - 1;
      if (failure.times <= 0) this.failures.splice(failureIndex, 1);
      if (failure.error !== undefined) throw failure.error;
      return failure.result as CommandResult;
    }
    return this.#execute(argv);
  }

  #execute(argv: readonly string[]): CommandResult {
    const ok = (stdout = ''): CommandResult => ({ exitCode: 0, stdout, stderr: '' });
    const fail = (exitCode: number, stderr: string): CommandResult => ({ exitCode, stdout: '', stderr });
    const [command, ...args] = argv;
    const last = args[args.length - 1];
    switch (command) {
      case 'nbd-client': {
        if (args[0] === '-d') {
          rmSync(this.#pidFile(args[1]), { force: true });
          this.connected.delete(args[1]);
          this.deviceSizes.delete(args[1]);
          return ok();
        }
        const [, , device, flag, exportName] = args;
        if (flag !== '-N') return fail(1, 'usage');
        if (this.connected.has(device)) return fail(1, 'Error: Device already connected');
        writeFileSync(this.#pidFile(device), '4242\n');
        this.connected.set(device, exportName);
        this.deviceSizes.set(device, this.exportSizes.get(exportName) ?? 1024 ** 3);
        return ok();
      }
      case 'blkid': {
        const fsType = this.filesystems.get(last);
        return fsType === undefined ? fail(2, '') : ok(`${fsType}\n`);
      }
      case 'mkfs.ext4':
      case 'mkfs.xfs': {
        this.filesystems.set(last, command.slice('mkfs.'.length));
        const fd = openSync(last, 'r+');
        writeSync(fd, Buffer.from('FAKEFS'), 0, 6, 1024);
        closeSync(fd);
        return ok();
      }
      case 'mount': {
        if (args[0] === '--bind') {
          if (!existsSync(args[2])) return fail(32, `mount point ${args[2]} does not exist`);
          this.mounts.set(args[2], args[1]);
          return ok();
        }
        if (args[0] === '-o' && args[1].startsWith('remount')) {
          if (!this.mounts.has(args[2])) return fail(32, 'not mounted');
          this.readonlyMounts.add(args[2]);
          return ok();
        }
        const device = args[args.length - 2];
        if (!this.connected.has(device)) return fail(32, `special device ${device} does not exist`);
        if (!existsSync(last)) return fail(32, `mount point ${last} does not exist`);
        this.mounts.set(last, device);
        return ok();
      }
      case 'umount': {
        if (!this.mounts.delete(last)) return fail(32, `${last}: not mounted`);
        this.readonlyMounts.delete(last);
        return ok();
      }
      case 'findmnt': {
        const source = this.mounts.get(last);
        return source === undefined ? fail(1, '') : ok(`${source}\n`);
      }
      case 'blockdev': {
        const sizeBytes = this.deviceSizes.get(last);
        if (sizeBytes === undefined) return fail(1, `cannot open ${last}`);
        return ok(`${sizeBytes}\n`);
      }
      case 'resize2fs':
      case 'xfs_growfs':
        return ok();
      default:
        return fail(127, `${command}: command not found`);
    }
  }
}
