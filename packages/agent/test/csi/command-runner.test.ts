// Proves ExecCommandRunner runs real processes the way the node service relies on: argv arrays
// with no shell (a `$(...)` stays literal), exit codes reported rather than thrown, a command
// that overruns its timeout killed and reported as AGENT_CSI_COMMAND_TIMEOUT, a missing binary
// reported as AGENT_CSI_COMMAND_FAILED, and runChecked turning a non-zero exit into
// AGENT_CSI_COMMAND_FAILED carrying stderr.
import test from 'ava';
import { ExecCommandRunner, runChecked } from '../../src/csi/command-runner.js';

const runner = new ExecCommandRunner({ timeoutMs: 10_000 });

test('argv is passed without a shell, and stdout comes back', async (t) => {
  const result = await runner.run(['echo', '$(id)', '; rm -rf /tmp/nothing', '`x`']);
  t.is(result.exitCode, 0);
  t.is(result.stdout, '$(id) ; rm -rf /tmp/nothing `x`\n');
});

test('a non-zero exit is a result, not an exception', async (t) => {
  const result = await runner.run(['sh', '-c', 'echo oops >&2; exit 3']);
  t.is(result.exitCode, 3);
  t.is(result.stderr, 'oops\n');
  const error = await t.throwsAsync(runChecked(runner, ['sh', '-c', 'echo bad thing >&2; exit 2']));
  t.is((error as { code?: string }).code, 'AGENT_CSI_COMMAND_FAILED');
  t.regex(error.message, /exited with 2: bad thing/);
});

test('a command over its timeout is killed and reported as AGENT_CSI_COMMAND_TIMEOUT', async (t) => {
  const startedAtMs = Date.now();
  const error = await t.throwsAsync(runner.run(['sleep', '30'], { timeoutMs: 200 }));
  t.is((error as { code?: string }).code, 'AGENT_CSI_COMMAND_TIMEOUT');
  t.true(Date.now() - startedAtMs < 10_000);
});

test('a missing binary is AGENT_CSI_COMMAND_FAILED', async (t) => {
  const error = await t.throwsAsync(runner.run(['/nonexistent/rdl-no-such-binary']));
  t.is((error as { code?: string }).code, 'AGENT_CSI_COMMAND_FAILED');
});
