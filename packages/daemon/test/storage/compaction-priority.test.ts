// Proves storage.compaction_nice: the thread openDatabase lowers is LevelDB's background thread
// (it is the one that does the compaction work, and only it changes priority), the main thread
// and libuv's pool keep theirs, and a database opened after the thread exists changes nothing.
// The governor (unit cases) raises the thread back to the process priority while level 0 backs up
// and lowers it again once drained. Linux only (procfs, per-thread setpriority) for the cases that
// run in a fresh child process.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import { CompactionPriorityGovernor, canRaiseBackTo } from '../../src/storage/compaction-priority.js';

const child = fileURLToPath(new URL('../fixtures/compaction-priority-child.js', import.meta.url));

interface Report {
  results: ({ status: 'lowered'; threadId: number; nice: number } | { status: 'unchanged'; reason: string })[];
  mainThreadId: number;
  threads: { id: number; nice: number; cpuTicks: number }[];
  /** Whether the lowered thread could be set back to nice 0 afterwards (and was). */
  raisedBack: boolean | null;
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

test('the thread is lowered only if it can be raised back: CAP_SYS_NICE or RLIMIT_NICE', (t) => {
  const limits = (soft: string): string =>
    `Limit                     Soft Limit           Hard Limit           Units     \nMax nice priority         ${soft}                    ${soft}                    \n`;
  const status = (capEff: string): string => `Name:\tnode\nCapInh:\t0000000000000000\nCapEff:\t${capEff}\n`;
  const noCaps = status('0000000000000000');
  t.false(canRaiseBackTo(0, noCaps, limits('0')), 'default limit: an unprivileged thread never goes back');
  t.true(canRaiseBackTo(0, noCaps, limits('20')), 'LimitNICE=+0');
  t.false(canRaiseBackTo(0, noCaps, limits('19')));
  t.true(canRaiseBackTo(5, noCaps, limits('15')), 'a daemon at nice 5 needs 15');
  t.true(canRaiseBackTo(0, noCaps, limits('unlimited')));
  t.true(canRaiseBackTo(0, status('0000000000800000'), limits('0')), 'CAP_SYS_NICE (bit 23)');
  t.false(canRaiseBackTo(0, status('0000000001000000'), limits('0')), 'bit 24 is CAP_SYS_RESOURCE');
  t.false(canRaiseBackTo(0, null, null), 'unreadable: no');
});

// The daemon as systemd runs it: an unprivileged user, with and without the unit's LimitNICE=+0.
const canDropPrivileges =
  process.platform === 'linux' &&
  process.getuid?.() === 0 &&
  ['/usr/bin/setpriv', '/usr/bin/prlimit'].every((path) => existsSync(path));
const asUnprivileged = canDropPrivileges ? test : test.skip;

async function runUnprivileged(niceLimit: number): Promise<Report> {
  const { stdout } = await promisify(execFile)(
    '/usr/bin/prlimit',
    [
      `--nice=${niceLimit}:${niceLimit}`,
      '/usr/bin/setpriv',
      '--reuid=65534',
      '--regid=65534',
      '--clear-groups',
      '--inh-caps=-all',
      process.execPath,
      child,
      '19',
    ],
    { timeout: 60_000, env: { ...process.env, TMPDIR: tmpdir() } },
  );
  return JSON.parse(stdout) as Report;
}

asUnprivileged('an unprivileged daemon without LimitNICE=+0 leaves the thread alone', async (t) => {
  const report = await runUnprivileged(0);
  t.is(report.results[0].status, 'unchanged');
  t.regex((report.results[0] as { reason: string }).reason, /RLIMIT_NICE >= 20 \(systemd: LimitNICE=\+0\)/);
  for (const thread of report.threads) t.is(thread.nice, 0, 'nothing lowered that could not go back');
});

// Raising RLIMIT_NICE's hard limit takes CAP_SYS_RESOURCE, which some machines' root lacks.
const canRaiseNiceLimit =
  canDropPrivileges &&
  (() => {
    try {
      execFileSync('/usr/bin/prlimit', ['--nice=20:20', '/bin/true'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();

(canRaiseNiceLimit ? test : test.skip)('with LimitNICE=+0 it lowers the thread and can raise it back', async (t) => {
  const report = await runUnprivileged(20);
  const [first] = report.results;
  if (first.status !== 'lowered') return t.fail(`not lowered: ${first.reason}`);
  t.is(report.threads.find((thread) => thread.id === first.threadId)?.nice, 19);
  // What the governor does when level 0 backs up, done by hand as the same user.
  t.is(report.raisedBack, true);
});
