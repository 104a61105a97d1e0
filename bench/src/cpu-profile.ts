#!/usr/bin/env node
import { readFileSync } from 'node:fs';

/** The parts of a V8 `.cpuprofile` (written by `node --cpu-prof`) the summary reads. */
export interface CpuProfile {
  readonly nodes: ReadonlyArray<{
    readonly id: number;
    readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  }>;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** Where a sample's time went, coarsely, for "what limits this figure". */
export type ProfileCategory =
  | 'idle'
  | 'gc'
  | 'program'
  | 'grpc'
  | 'serialization'
  | 'leveldb'
  | 'raft'
  | 'daemon'
  | 'logging'
  | 'node-internal'
  | 'other';

/** The category of a call frame, from its function name and script URL. */
export function categoryOf(functionName: string, url: string): ProfileCategory {
  if (functionName === '(idle)') return 'idle';
  if (functionName === '(garbage collector)') return 'gc';
  if (functionName === '(program)') return 'program';
  if (url.includes('@grpc/') || url.includes('/http2')) return 'grpc';
  if (url.includes('msgpackr') || url.includes('protobufjs')) return 'serialization';
  if (url.includes('classic-level') || url.includes('abstract-level') || url.includes('/level/')) return 'leveldb';
  if (url.includes('packages/raft/')) return 'raft';
  if (url.includes('packages/daemon/')) return 'daemon';
  if (url.includes('pino')) return 'logging';
  if (url.startsWith('node:') || url === '') return 'node-internal';
  return 'other';
}

/** Self time per category and the top functions by self time, in milliseconds. */
export interface ProfileSummary {
  readonly totalMs: number;
  readonly byCategoryMs: Readonly<Record<string, number>>;
  readonly topFunctions: ReadonlyArray<{ name: string; category: ProfileCategory; selfMs: number }>;
}

/**
 * Sums the self time of every sample (the time delta that follows it) by category and by function.
 * `top` bounds the function list.
 */
export function summariseProfile(profile: CpuProfile, top = 15): ProfileSummary {
  const frameOf = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const byCategory: Record<string, number> = {};
  const byFunction = new Map<string, { name: string; category: ProfileCategory; selfMs: number }>();
  let totalMs = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const frame = frameOf.get(profile.samples[i]);
    if (frame === undefined) continue;
    // timeDeltas[i] is the time before sample i; the time after it is the sample's weight.
    const ms = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    const category = categoryOf(frame.functionName, frame.url);
    byCategory[category] = (byCategory[category] ?? 0) + ms;
    totalMs += ms;
    const file = frame.url.split('/').slice(-2).join('/');
    const name = `${frame.functionName || '(anonymous)'} ${file}:${frame.lineNumber + 1}`;
    const entry = byFunction.get(name) ?? { name, category, selfMs: 0 };
    entry.selfMs += ms;
    byFunction.set(name, entry);
  }
  const topFunctions = [...byFunction.values()].sort((a, b) => b.selfMs - a.selfMs).slice(0, top);
  return { totalMs, byCategoryMs: byCategory, topFunctions };
}

/** Formats a summary as text: categories as a share of all samples, then the top functions. */
export function formatProfileSummary(summary: ProfileSummary): string {
  const pct = (ms: number): string => `${((100 * ms) / Math.max(1, summary.totalMs)).toFixed(1)}%`;
  const lines = [`total ${(summary.totalMs / 1000).toFixed(1)} s sampled`];
  for (const [category, ms] of Object.entries(summary.byCategoryMs).sort((a, b) => b[1] - a[1])) {
    lines.push(`  ${category.padEnd(14)} ${pct(ms).padStart(6)}`);
  }
  lines.push('top functions by self time:');
  for (const f of summary.topFunctions) lines.push(`  ${pct(f.selfMs).padStart(6)}  [${f.category}] ${f.name}`);
  return lines.join('\n');
}

// CLI: node bench/dist/src/cpu-profile.js FILE.cpuprofile [...]
if (process.argv[1]?.endsWith('cpu-profile.js')) {
  for (const path of process.argv.slice(2)) {
    const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
    process.stdout.write(`${path}\n${formatProfileSummary(summariseProfile(profile))}\n\n`);
  }
}
