/**
 * The V8 flags rdl-agent runs with: the image's ENTRYPOINT (deploy/kubernetes/Dockerfile), the
 * shebang of bin/rdl-agent.js (which `npm start` executes) and the bench use this list
 * (test/csi/manifests.test.ts keeps the first two equal to it).
 *
 * `--initial-old-space-size=128`, as for rdld (packages/daemon/src/node-flags.ts): the agent's live
 * heap is ~10 MB, and with V8's limit just above it the agent ran a full mark-compact every ~0.1 s
 * while serving fio over NBD (104-131 in a 30 s run, 0.7-0.8 s of pauses). With the floor it ran
 * none; the daemons' plus the agent's CPU per NBD read fell 17-37% (docs/benchmarks.md, session 7).
 */
export const AGENT_NODE_FLAGS: readonly string[] = Object.freeze(['--initial-old-space-size=128']);
