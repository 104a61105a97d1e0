// Unit tests of the CSI driver's pure rules: the size chosen for a capacity range (4 KiB
// rounding, default, limit, OUT_OF_RANGE, negative and over-2^53 int64 values), the deterministic
// CreateVolume name to volume id mapping, capability checks, and ListVolumes tokens (round trip,
// and rejection of anything this plugin did not issue).
import test from 'ava';
import {
  capabilityKey,
  capabilityProblem,
  chooseVolumeSize,
  decodeListToken,
  encodeListToken,
  sizeSatisfiesRange,
  volumeIdForName,
} from '../../src/csi/validation.js';
import type { VolumeCapability } from '../../src/csi/types.js';

const limits = { defaultVolumeSizeBytes: 1 << 20, maxVolumeSizeBytes: 1 << 30 };
const codeOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
};

test('chooseVolumeSize rounds, defaults and caps', (t) => {
  t.is(chooseVolumeSize(null, limits), 1 << 20);
  t.is(chooseVolumeSize({ required_bytes: '1', limit_bytes: '0' }, limits), 4096);
  t.is(chooseVolumeSize({ required_bytes: '4096', limit_bytes: '0' }, limits), 4096);
  t.is(chooseVolumeSize({ required_bytes: '4097', limit_bytes: '0' }, limits), 8192);
  t.is(chooseVolumeSize({ required_bytes: '0', limit_bytes: '9000' }, limits), 8192);
  t.is(chooseVolumeSize({ required_bytes: '5000', limit_bytes: '9000' }, limits), 8192);
  t.is(
    codeOf(() => chooseVolumeSize({ required_bytes: '5000', limit_bytes: '6000' }, limits)),
    'AGENT_CSI_CAPACITY_OUT_OF_RANGE',
  );
  t.is(
    codeOf(() => chooseVolumeSize({ required_bytes: '0', limit_bytes: '100' }, limits)),
    'AGENT_CSI_CAPACITY_OUT_OF_RANGE',
  );
  t.is(
    codeOf(() => chooseVolumeSize({ required_bytes: String((1 << 30) + 1), limit_bytes: '0' }, limits)),
    'AGENT_CSI_CAPACITY_OUT_OF_RANGE',
  );
  t.is(
    codeOf(() => chooseVolumeSize({ required_bytes: '9007199254740993', limit_bytes: '0' }, limits)),
    'AGENT_CSI_CAPACITY_OUT_OF_RANGE',
  );
  t.is(
    codeOf(() => chooseVolumeSize({ required_bytes: '-4096', limit_bytes: '0' }, limits)),
    'AGENT_CSI_ARGUMENT_INVALID',
  );
});

test('sizeSatisfiesRange follows the spec: at least required, at most limit when set', (t) => {
  t.true(sizeSatisfiesRange(8192, { required_bytes: '8192', limit_bytes: '0' }));
  t.true(sizeSatisfiesRange(8192, null));
  t.false(sizeSatisfiesRange(8192, { required_bytes: '8193', limit_bytes: '0' }));
  t.false(sizeSatisfiesRange(8192, { required_bytes: '0', limit_bytes: '4096' }));
});

test('volumeIdForName keeps rdl-valid names and hashes the others deterministically', (t) => {
  t.is(volumeIdForName('pvc-0c6e1d2a-9f3b-4e55-8d7c-1b2a3c4d5e6f'), 'pvc-0c6e1d2a-9f3b-4e55-8d7c-1b2a3c4d5e6f');
  const hashed = volumeIdForName('needs/mapping');
  t.regex(hashed, /^csi-[0-9a-f]{40}$/);
  t.is(volumeIdForName('needs/mapping'), hashed);
  t.not(volumeIdForName('needs/mapping2'), hashed);
  t.is(
    codeOf(() => volumeIdForName('tab\tok but bell \u0007 is not')),
    'AGENT_CSI_ARGUMENT_INVALID',
  );
});

test('capabilityProblem accepts single-node writer modes only, ext4/xfs only', (t) => {
  const mount = (fs: string, mode: string, flags: string[] = []) =>
    ({
      mount: { fs_type: fs, mount_flags: flags, volume_mount_group: '' },
      access_mode: { mode },
      access_type: 'mount',
    }) as VolumeCapability;
  t.is(capabilityProblem(mount('', 'SINGLE_NODE_WRITER')), undefined);
  t.is(capabilityProblem(mount('xfs', 'SINGLE_NODE_MULTI_WRITER', ['noatime', 'discard'])), undefined);
  t.regex(capabilityProblem(mount('', 'MULTI_NODE_READER_ONLY')) ?? '', /not supported/);
  t.regex(capabilityProblem(mount('ntfs', 'SINGLE_NODE_WRITER')) ?? '', /fs_type/);
  t.regex(capabilityProblem(mount('', 'SINGLE_NODE_WRITER', ['a,b'])) ?? '', /mount_flags/);
  t.regex(capabilityProblem(mount('', 'SINGLE_NODE_WRITER', ['x'.repeat(5000)])) ?? '', /4096/);
  t.regex(capabilityProblem({ access_mode: { mode: 'SINGLE_NODE_WRITER' } } as VolumeCapability) ?? '', /required/);
  t.is(capabilityKey(mount('', 'SINGLE_NODE_WRITER')), capabilityKey(mount('ext4', 'SINGLE_NODE_WRITER')));
  t.not(capabilityKey(mount('', 'SINGLE_NODE_WRITER')), capabilityKey(mount('xfs', 'SINGLE_NODE_WRITER')));
});

test('list tokens round-trip and foreign tokens are rejected with TOKEN_INVALID', (t) => {
  t.is(decodeListToken(encodeListToken('pvc-1')), 'pvc-1');
  for (const token of [
    'pvc-1',
    'rdl1:',
    'rdl1:***',
    `rdl1:${Buffer.from('bad name!').toString('base64url')}`,
    'rdl1:cHZjLTE=',
  ]) {
    t.is(
      codeOf(() => decodeListToken(token)),
      'AGENT_CSI_TOKEN_INVALID',
      token,
    );
  }
});
