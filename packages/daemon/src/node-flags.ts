/**
 * The V8 flags rdld runs with. One list for every way rdld is started: the systemd unit's
 * ExecStart, the shebang of bin/rdld.js, `npm start` (dev-cluster.ts), the bench and the
 * integration tests (test/unit/node-flags.test.ts checks that the unit and the shebang match it).
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

/** The flags of {@link RDLD_NODE_FLAGS} missing from `execArgv` (the running process's node flags). */
export function missingNodeFlags(execArgv: readonly string[]): string[] {
  return RDLD_NODE_FLAGS.filter((flag) => !execArgv.includes(flag));
}
