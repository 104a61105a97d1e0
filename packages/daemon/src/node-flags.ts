/**
 * The V8 flags rdld runs with (its environment: {@link RDLD_ENVIRONMENT} below). One list for every
 * way rdld is started: the systemd unit's ExecStart, the shebang of bin/rdld.js, `npm start`
 * (dev-cluster.ts), the bench and the integration tests (test/unit/node-flags.test.ts checks that
 * the unit and the shebang match it).
 *
 * `--initial-old-space-size=128`: rdld's JS heap holds only ~15-20 MB of live objects, so V8 sets
 * the old generation's limit just above that and runs a full mark-compact after every few MB
 * promoted: under 64 writes in flight the leader ran ~2 per second (and ~5 per second under 1 MiB
 * writes), each a 10-25 ms pause plus concurrent marking on V8's worker threads, which was 17-21%
 * of all CPU in a perf profile of the three daemons. With a 128 MiB floor the same workloads ran a
 * quarter as many mark-compacts and used 8-11% less CPU per write (15-25% less for NBD writes
 * and the 70/30 mix; docs/benchmarks.md, session 7). The flag sets a floor for the limit, not a
 * reservation: the heap may hold up to ~110 MiB more garbage before a collection, and an idle
 * daemon's heap stays small.
 */
export const RDLD_NODE_FLAGS: readonly string[] = Object.freeze(['--initial-old-space-size=128']);

/**
 * The flags of `wanted` ({@link RDLD_NODE_FLAGS} unless given: the bench checks its own list too)
 * missing from `execArgv` (the running process's node flags).
 */
export function missingNodeFlags(execArgv: readonly string[], wanted: readonly string[] = RDLD_NODE_FLAGS): string[] {
  return wanted.filter((flag) => !execArgv.includes(flag));
}

/**
 * Environment variables rdld runs with, set by the same launchers as {@link RDLD_NODE_FLAGS}: the
 * unit's `Environment=`, the shebang (`env -S VAR=value node ...`), the bench and the integration
 * harness (test/unit/node-flags.test.ts checks the unit and the shebang).
 *
 * `GLIBC_TUNABLES`, read by the C library when the process starts (setting it later does
 * nothing): glibc's malloc returns freed memory at the top of its heap to the kernel once more
 * than 128 KiB is free there, and serves each allocation of 128 KiB or more (adapting up to 32 MiB)
 * with its own mmap, so rdld's large short-lived buffers (256 KiB peer frames, WAL writes, LevelDB
 * memtable blocks, 1 MiB payloads) came from fresh pages again and again, and the kernel zeroed
 * every page on its first touch: in a perf profile of the three daemons at 64 writes in flight
 * the zeroing alone (`clear_page_erms`) was 7.8% of all CPU, 0.8% with these settings (2.6% and
 * 1.5% once the WAL stopped copying payloads), and CPU per write fell 12% in the median of six
 * interleaved pairs (docs/benchmarks.md, session 8).
 * `trim_threshold` 256 MiB keeps freed heap memory for reuse, `mmap_threshold` 16 MiB serves
 * buffers below that from the heap. The price: the resident size stays near its peak instead of
 * shrinking after a burst (docs/operations.md, "What the unit does").
 */
export const RDLD_ENVIRONMENT: Readonly<Record<string, string>> = Object.freeze({
  GLIBC_TUNABLES: 'glibc.malloc.trim_threshold=268435456:glibc.malloc.mmap_threshold=16777216',
});

/**
 * The settings of {@link RDLD_ENVIRONMENT} that `env` lacks, as `NAME=item`: each value is a
 * colon-separated list (as `GLIBC_TUNABLES` is) and each item must be among the variable's items
 * in `env`, which may hold others too. Empty where they do not apply: only glibc reads
 * `GLIBC_TUNABLES` (`isGlibc` false: musl, macOS).
 */
export function missingEnvironment(env: NodeJS.ProcessEnv, isGlibc: boolean): string[] {
  if (!isGlibc) return [];
  return Object.entries(RDLD_ENVIRONMENT).flatMap(([name, value]) => {
    const present = (env[name] ?? '').split(':');
    return value
      .split(':')
      .filter((item) => !present.includes(item))
      .map((item) => `${name}=${item}`);
  });
}

/** Whether this process runs on glibc (Node's diagnostic report names its version; musl has none). */
export function isGlibcRuntime(): boolean {
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: unknown } } | undefined;
  return typeof report?.header?.glibcVersionRuntime === 'string';
}
