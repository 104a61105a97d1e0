// Proves the core's behaviour in the hard cases, step by step: each script in testdata/*.txt drives
// a cluster of pure cores (which messages are delivered, when disks sync, who crashes) and its
// transcript must equal the golden file testdata/*.golden. Regenerate with UPDATE_GOLDEN=1 and
// review the diff (`git diff packages/raft/test/interaction/testdata`). Each script also states
// in `# expect:` comments the facts the case is about, checked here independently of the golden.
import test from 'ava';
import { readFileSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runInteraction } from '../../src/testing/interaction.js';

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/interaction/testdata');
const isUpdating = process.env.UPDATE_GOLDEN === '1';

for (const file of readdirSync(dir).filter((f) => f.endsWith('.txt'))) {
  test(file.replace(/\.txt$/, ''), (t) => {
    const script = readFileSync(path.join(dir, file), 'utf8');
    const transcript = runInteraction(script);
    const goldenPath = path.join(dir, file.replace(/\.txt$/, '.golden'));
    if (isUpdating) writeFileSync(goldenPath, transcript);
    t.true(existsSync(goldenPath), `missing ${goldenPath}: run with UPDATE_GOLDEN=1`);
    t.is(transcript, readFileSync(goldenPath, 'utf8'), 'transcript differs from the golden file');
    // `# expect: TEXT` lines: the transcript must contain TEXT (`# expect-not: TEXT`: must not).
    for (const match of script.matchAll(/^# expect: (.+)$/gm))
      t.true(transcript.includes(match[1]), `expected: ${match[1]}`);
    for (const match of script.matchAll(/^# expect-not: (.+)$/gm))
      t.false(transcript.includes(match[1]), `not expected: ${match[1]}`);
  });
}

test('a malformed script names the line at fault', (t) => {
  t.throws(() => runInteraction('cluster 3\ncampaign 9'), { message: /line 2: no node 9/ });
  t.throws(() => runInteraction('cluster 3\nfrobnicate'), { message: /line 2: unknown command frobnicate/ });
  t.throws(() => runInteraction('cluster 3\ncampaign 1\ndeliver\ncompact 1 5'), {
    message: /line 4: compact 1 5: INDEX must be in 1\.\.1/,
  });
  t.throws(() => runInteraction('cluster 3\ndeliver 0'), { message: /line 2: deliver 0: ROUNDS >= 1/ });
});
