// Proves storage.compaction_nice: the thread openDatabase lowers is LevelDB's background thread
// (it is the one that does the compaction work, and only it changes priority), the main thread
// and libuv's pool keep theirs, and a database opened after the thread exists changes nothing.
// The governor (unit cases) raises the thread back to the process priority while level 0 backs up
// and lowers it again once drained. Linux only (procfs, per-thread setpriority) for the cases that
// run in a fresh child process.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import { CompactionPriorityGovernor } from '../../src/storage/compaction-priority.js';

const child = fileURLToPath(new URL('../fixtures/compaction-priority-child.js', import.meta.url));

interface Report {
  results: ({ status: 'lowered'; threadId: number; nice: number } | { status: 'unchanged'; reason: string })[];
  mainThreadId: number;
  threads: { id: number; nice: number; cpuTicks: number }[];
}

async function run(nice: number): Promise<Report> {
  const { stdout } = await promisify(execFile)(process.execPath, [child, String(nice)], { timeout: 60_000 });
  return JSON.parse(stdout) as Report;
}

const linuxOnly = process.platform === 'linux' ? test : test.skip;

linuxOnly('compaction_nice lowers exactly the thread that runs compactions', async (t) => {
  const report = await run(19);
  const [first, second] = report.results;
  if (first.status !== 'lowered') return t.fail(`not lowered: ${first.reason}`);
  t.is(first.nice, 19);
  const lowered = report.threads.find((thread) => thread.id === first.threadId);
  t.truthy(lowered, 'the lowered thread is one of the process');
  t.is(lowered!.nice, 19);
  // ~24 MiB of random blocks flushed and compacted: that CPU time is on the lowered thread, far
  // more than on any other thread but the main one (libuv's pool only wrote the batches).
  const others = report.threads.filter((thread) => thread.id !== first.threadId && thread.id !== report.mainThreadId);
  const busiestOther = Math.max(...others.map((thread) => thread.cpuTicks));
  t.true(
    lowered!.cpuTicks > 0 && lowered!.cpuTicks > 5 * busiestOther,
    `the lowered thread is not the compacting one: ${JSON.stringify(report.threads)}`,
  );
  for (const thread of report.threads) {
    if (thread.id !== first.threadId) t.is(thread.nice, 0, `thread ${thread.id} kept the process's priority`);
  }
  t.not(first.threadId, report.mainThreadId);
  // The second database shares the running thread: nothing new to find, nothing changed.
  t.is(second.status, 'unchanged');
  t.regex((second as { reason: string }).reason, /found 0/);
});

linuxOnly('compaction_nice 0 leaves every thread alone', async (t) => {
  const report = await run(0);
  t.deepEqual(report.results, []);
  for (const thread of report.threads) t.is(thread.nice, 0);
});

test('the governor gives the thread its priority back while level 0 backs up, with hysteresis', (t) => {
  const changes: [number, number][] = [];
  let files = 0;
  const governor = new CompactionPriorityGovernor({
    threadId: 4242,
    lowNice: 19,
    normalNice: 0,
    boostAtFiles: 6,
    relaxAtFiles: 3,
    level0Files: () => files,
    setNice: (threadId, nice) => changes.push([threadId, nice]),
  });
  const look = (n: number): number => {
    files = n;
    governor.poll();
    return governor.nice;
  };
  t.is(look(5), 19, 'below the boost threshold: stays low');
  t.is(look(6), 0, 'level 0 backs up: the process priority');
  t.is(look(4), 0, 'above the relax threshold: stays boosted');
  t.is(look(3), 19, 'drained: low again');
  t.is(look(8), 0);
  t.is(look(0), 19);
  t.deepEqual(changes, [
    [4242, 0],
    [4242, 19],
    [4242, 0],
    [4242, 19],
  ]);
  t.is(governor.boosts, 2);
  t.is(governor.level0Files, 0);
});

test('the governor stops at the first failure and says so', (t) => {
  const errors: string[] = [];
  let reads = 0;
  const governor = new CompactionPriorityGovernor({
    threadId: 4242,
    lowNice: 19,
    normalNice: 0,
    level0Files: () => {
      reads++;
      return 12;
    },
    setNice: () => {
      throw new Error('ESRCH');
    },
    onError: (error) => errors.push(error.message),
  });
  governor.poll();
  governor.poll();
  t.deepEqual(errors, ['ESRCH']);
  t.is(reads, 1, 'no look after the failure');
  t.is(governor.nice, 19);
  t.throws(
    () =>
      new CompactionPriorityGovernor({
        threadId: 1,
        lowNice: 19,
        boostAtFiles: 3,
        relaxAtFiles: 3,
        level0Files: () => 0,
      }),
    {
      instanceOf: RangeError,
    },
  );
});
