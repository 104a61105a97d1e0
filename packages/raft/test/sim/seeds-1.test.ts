// Proves the Raft core stays safe under faults: runs simulator seeds 1..250 (250 of the
// >= 1,000 seeds npm test runs, split in four files so AVA runs them in parallel), each with a
// seed-drawn mix of message drop/duplication/delay/reordering, partitions, crashes losing unsynced
// writes, disk stalls, fsync failures, leadership transfers, log compaction, snapshot installs and
// membership changes (add, remove, replace, removing the leader),
// checking the invariants after every event and the clients' history with the linearizability
// checker.
import test from 'ava';
import { registerSeedRange } from './seeds.js';

registerSeedRange(test, 1, 250);
