/**
 * The V8 flags the bench process itself runs with (the root package.json's `bench` script; a unit
 * test keeps the two equal). The bench process is the load generator: it hosts the rdl SDK client
 * and the etcd client alike, on the same two cores as the systems it measures, so its own garbage
 * collection is CPU taken from both.
 *
 * `--initial-old-space-size=128`, as for rdld and rdl-agent: with V8's default the bench process
 * (a live heap of ~15 MB) ran 85 full mark-compacts in a 30 s run of 4 KiB writes and reads, and a
 * perf profile of reads at 64 in flight found half of its CPU in garbage collection. With the floor
 * it ran none (docs/benchmarks.md, session 8).
 */
export const BENCH_NODE_FLAGS: readonly string[] = Object.freeze(['--initial-old-space-size=128']);
