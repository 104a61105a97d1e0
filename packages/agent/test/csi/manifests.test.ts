// Proves the Kubernetes manifests in deploy/kubernetes are what a cluster would accept and what
// the driver expects: every YAML document parses (the `yaml` package) and has the apiVersion,
// kind and metadata Kubernetes requires for its kind (namespaced or not); workload selectors
// match their pod template labels, containers have unique names and images, mounts name declared
// volumes, service accounts and RBAC references resolve; the CSIDriver and StorageClass use the
// name GetPluginInfo reports; the node plugin is privileged with /dev, /sys and the kubelet
// directory (Bidirectional propagation); every flag passed to `rdl-agent csi` exists in the CLI;
// kustomization.yaml lists every manifest; and the image starts node with AGENT_NODE_FLAGS, as the
// agent's shebang does. No cluster is involved (none is available here).
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import test from 'ava';
import { Command } from 'commander';
import { parseAllDocuments } from 'yaml';
import { registerCsiCommand } from '../../src/csi/command.js';
import { registerNbdCommand } from '../../src/nbd/command.js';
import { csiDriverName } from '../../src/csi/identity.js';
import { AGENT_NODE_FLAGS } from '../../src/node-flags.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Doc = any;

const manifestDir = fileURLToPath(new URL('../../../../../deploy/kubernetes/', import.meta.url));
const namespace = 'rdl-system';

const apiVersionByKind: Record<string, string> = {
  Namespace: 'v1',
  ConfigMap: 'v1',
  ServiceAccount: 'v1',
  ClusterRole: 'rbac.authorization.k8s.io/v1',
  ClusterRoleBinding: 'rbac.authorization.k8s.io/v1',
  Role: 'rbac.authorization.k8s.io/v1',
  RoleBinding: 'rbac.authorization.k8s.io/v1',
  CSIDriver: 'storage.k8s.io/v1',
  StorageClass: 'storage.k8s.io/v1',
  Deployment: 'apps/v1',
  DaemonSet: 'apps/v1',
};
const clusterScopedKinds = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CSIDriver', 'StorageClass']);
const dnsSubdomain = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const dnsLabel = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

const manifestFiles = readdirSync(manifestDir).filter(
  (file) => file.endsWith('.yaml') && file !== 'kustomization.yaml',
);

function loadDocuments(): { file: string; doc: Doc }[] {
  const documents: { file: string; doc: Doc }[] = [];
  for (const file of manifestFiles) {
    for (const parsed of parseAllDocuments(readFileSync(join(manifestDir, file), 'utf8'))) {
      if (parsed.errors.length > 0) throw new Error(`${file}: ${parsed.errors.map((e) => e.message).join('; ')}`);
      const doc = parsed.toJS();
      if (doc !== null) documents.push({ file, doc });
    }
  }
  return documents;
}

const documents = loadDocuments();
const byKind = (kind: string): Doc[] => documents.filter(({ doc }) => doc.kind === kind).map(({ doc }) => doc);
const one = (kind: string, name: string): Doc => {
  const found = byKind(kind).filter((doc) => doc.metadata.name === name);
  if (found.length !== 1) throw new Error(`expected one ${kind} ${name}, found ${found.length}`);
  return found[0];
};

test('every document has a known kind, its apiVersion, a valid name and the right scope', (t) => {
  t.true(documents.length >= 14, `only ${documents.length} documents`);
  const seen = new Set<string>();
  for (const { file, doc } of documents) {
    const where = `${file}: ${doc.kind}/${doc.metadata?.name}`;
    t.truthy(apiVersionByKind[doc.kind], `${where}: unexpected kind`);
    t.is(doc.apiVersion, apiVersionByKind[doc.kind], where);
    t.regex(doc.metadata?.name ?? '', dnsSubdomain, where);
    if (clusterScopedKinds.has(doc.kind)) t.is(doc.metadata.namespace, undefined, `${where} is cluster-scoped`);
    else t.is(doc.metadata.namespace, namespace, `${where} must be in ${namespace}`);
    const key = `${doc.kind}/${doc.metadata.namespace ?? ''}/${doc.metadata.name}`;
    t.false(seen.has(key), `${where} is defined twice`);
    seen.add(key);
  }
  one('Namespace', namespace);
});

test('CSIDriver and StorageClass use the driver name GetPluginInfo reports', (t) => {
  const driver = one('CSIDriver', csiDriverName);
  t.false(driver.spec.attachRequired);
  t.true(driver.spec.podInfoOnMount);
  t.deepEqual(driver.spec.volumeLifecycleModes, ['Persistent']);
  const storageClass = one('StorageClass', 'rdl-replicated');
  t.is(storageClass.provisioner, csiDriverName);
  t.true(storageClass.allowVolumeExpansion);
  t.true(['Immediate', 'WaitForFirstConsumer'].includes(storageClass.volumeBindingMode));
  t.true(['Delete', 'Retain'].includes(storageClass.reclaimPolicy));
  t.true(['ext4', 'xfs'].includes(storageClass.parameters['csi.storage.k8s.io/fstype']));
});

function podSpecOf(workload: Doc): Doc {
  return workload.spec.template.spec;
}

function allContainers(workload: Doc): Doc[] {
  return [...(podSpecOf(workload).initContainers ?? []), ...podSpecOf(workload).containers];
}

test('workloads: selectors match template labels, containers are complete, mounts and references resolve', (t) => {
  const workloads = [...byKind('Deployment'), ...byKind('DaemonSet')];
  t.is(workloads.length, 2);
  const serviceAccounts = new Set(byKind('ServiceAccount').map((doc) => doc.metadata.name));
  const configMaps = new Map(byKind('ConfigMap').map((doc) => [doc.metadata.name, doc]));
  for (const workload of workloads) {
    const where = `${workload.kind}/${workload.metadata.name}`;
    const matchLabels = workload.spec.selector?.matchLabels ?? {};
    t.true(Object.keys(matchLabels).length > 0, `${where}: selector.matchLabels is required`);
    for (const [key, value] of Object.entries(matchLabels)) {
      t.is(workload.spec.template.metadata.labels[key], value, `${where}: template lacks selector label ${key}`);
    }
    const spec = podSpecOf(workload);
    t.true(serviceAccounts.has(spec.serviceAccountName), `${where}: service account ${spec.serviceAccountName}`);
    t.true(spec.containers.length > 0);
    const volumes = new Set((spec.volumes ?? []).map((volume: Doc) => volume.name));
    const containerNames = new Set<string>();
    for (const container of allContainers(workload)) {
      t.regex(container.name ?? '', dnsLabel, `${where}: container name`);
      t.false(containerNames.has(container.name), `${where}: duplicate container ${container.name}`);
      containerNames.add(container.name);
      t.regex(container.image ?? '', /^[a-z0-9.\-/]+:[A-Za-z0-9._-]+$/, `${where}/${container.name}: image with a tag`);
      for (const mount of container.volumeMounts ?? []) {
        t.true(volumes.has(mount.name), `${where}/${container.name}: mount of undeclared volume ${mount.name}`);
        t.true(mount.mountPath.startsWith('/'));
      }
      const portNames = new Set((container.ports ?? []).map((port: Doc) => port.name));
      for (const port of container.ports ?? []) t.true(port.containerPort > 0 && port.containerPort < 65536);
      const probePort = container.livenessProbe?.httpGet?.port;
      if (probePort !== undefined)
        t.true(portNames.has(probePort), `${where}/${container.name}: probe port ${probePort}`);
      for (const env of container.env ?? []) {
        const ref = env.valueFrom?.configMapKeyRef;
        if (ref !== undefined) t.truthy(configMaps.get(ref.name)?.data?.[ref.key], `${where}: ${ref.name}/${ref.key}`);
      }
    }
  }
});

test('the controller runs the provisioner, resizer and liveness probe sidecars on one socket', (t) => {
  const controller = one('Deployment', 'rdl-csi-controller');
  const containers = new Map(allContainers(controller).map((container: Doc) => [container.name, container]));
  for (const sidecar of ['csi-provisioner', 'csi-resizer', 'liveness-probe']) {
    t.true(containers.get(sidecar)?.args.includes('--csi-address=/csi/csi.sock'), sidecar);
  }
  t.regex(containers.get('csi-provisioner').image, /sig-storage\/csi-provisioner:/);
  t.regex(containers.get('csi-resizer').image, /sig-storage\/csi-resizer:/);
  t.regex(containers.get('liveness-probe').image, /sig-storage\/livenessprobe:/);
  t.true(containers.get('rdl-csi').args.includes('--mode=controller'));
  t.true(containers.get('rdl-csi').args.includes('--endpoint=unix:///csi/csi.sock'));
});

test('the node plugin is privileged with /dev, /sys and the kubelet directory (Bidirectional)', (t) => {
  const node = one('DaemonSet', 'rdl-csi-node');
  const spec = podSpecOf(node);
  const containers = new Map(allContainers(node).map((container: Doc) => [container.name, container]));
  const csi = containers.get('rdl-csi');
  t.true(csi.securityContext.privileged);
  t.true(csi.args.includes('--mode=node'));
  const volumes = new Map<string, Doc>(spec.volumes.map((volume: Doc) => [volume.name, volume]));
  const mountAt = (path: string) => csi.volumeMounts.find((mount: Doc) => mount.mountPath === path);
  t.is(volumes.get(mountAt('/dev').name).hostPath.path, '/dev');
  t.is(volumes.get(mountAt('/sys').name).hostPath.path, '/sys');
  const kubelet = mountAt('/var/lib/kubelet');
  t.is(kubelet.mountPropagation, 'Bidirectional');
  t.is(volumes.get(kubelet.name).hostPath.path, '/var/lib/kubelet');
  const registrar = containers.get('node-driver-registrar');
  t.regex(registrar.image, /sig-storage\/csi-node-driver-registrar:/);
  t.true(registrar.args.includes(`--kubelet-registration-path=/var/lib/kubelet/plugins/${csiDriverName}/csi.sock`));
  const pluginDir = volumes.get(registrar.volumeMounts.find((mount: Doc) => mount.mountPath === '/csi').name);
  t.is(pluginDir.hostPath.path, `/var/lib/kubelet/plugins/${csiDriverName}`);
  t.is(
    volumes.get(registrar.volumeMounts.find((mount: Doc) => mount.mountPath === '/registration').name).hostPath.path,
    '/var/lib/kubelet/plugins_registry',
  );
  t.truthy(containers.get('liveness-probe'));
  // The NBD server the node plugin attaches to listens where --nbd-host/--nbd-port point.
  t.true(containers.get('rdl-nbd').args.includes('--listen=127.0.0.1:10809'));
  t.true(csi.args.includes('--nbd-host=127.0.0.1') && csi.args.includes('--nbd-port=10809'));
  t.true(spec.hostNetwork);
});

test('every flag given to rdl-agent csi and nbd exists in the CLI', (t) => {
  const program = new Command();
  registerCsiCommand(program);
  registerNbdCommand(program);
  const flagsOf = (name: string) =>
    new Set(program.commands.find((command) => command.name() === name)?.options.map((option) => option.long));
  const known: Record<string, Set<string | undefined>> = { csi: flagsOf('csi'), nbd: flagsOf('nbd') };
  let checked = 0;
  for (const workload of [...byKind('Deployment'), ...byKind('DaemonSet')]) {
    for (const container of allContainers(workload)) {
      const subcommand = container.args?.[0];
      if (subcommand !== 'csi' && subcommand !== 'nbd') continue;
      for (const arg of container.args.slice(1)) {
        const flag = String(arg).split('=')[0];
        t.true(
          known[subcommand].has(flag),
          `${workload.metadata.name}/${container.name}: unknown ${subcommand} flag ${flag}`,
        );
        checked += 1;
      }
    }
  }
  t.true(checked >= 10);
});

test('RBAC: bindings reference defined roles and service accounts; the sidecars get what they need', (t) => {
  const serviceAccounts = new Set(
    byKind('ServiceAccount').map((doc) => `${doc.metadata.namespace}/${doc.metadata.name}`),
  );
  const roles = new Map(
    [...byKind('ClusterRole'), ...byKind('Role')].map((doc) => [`${doc.kind}/${doc.metadata.name}`, doc]),
  );
  for (const binding of [...byKind('ClusterRoleBinding'), ...byKind('RoleBinding')]) {
    const where = `${binding.kind}/${binding.metadata.name}`;
    t.is(binding.roleRef.apiGroup, 'rbac.authorization.k8s.io', where);
    t.truthy(roles.get(`${binding.roleRef.kind}/${binding.roleRef.name}`), `${where}: role ${binding.roleRef.name}`);
    t.true(binding.subjects.length > 0);
    for (const subject of binding.subjects) {
      t.is(subject.kind, 'ServiceAccount');
      t.true(serviceAccounts.has(`${subject.namespace}/${subject.name}`), `${where}: subject ${subject.name}`);
    }
  }
  for (const role of roles.values()) {
    for (const rule of role.rules) {
      t.true(Array.isArray(rule.apiGroups) && rule.resources.length > 0 && rule.verbs.length > 0, role.metadata.name);
    }
  }
  const allows = (roleKey: string, group: string, resource: string, verb: string) =>
    roles
      .get(roleKey)
      .rules.some(
        (rule: Doc) => rule.apiGroups.includes(group) && rule.resources.includes(resource) && rule.verbs.includes(verb),
      );
  t.true(allows('ClusterRole/rdl-csi-provisioner', '', 'persistentvolumes', 'create'));
  t.true(allows('ClusterRole/rdl-csi-provisioner', '', 'persistentvolumes', 'delete'));
  t.true(allows('ClusterRole/rdl-csi-provisioner', 'storage.k8s.io', 'storageclasses', 'get'));
  t.true(allows('ClusterRole/rdl-csi-resizer', '', 'persistentvolumeclaims/status', 'patch'));
  t.true(allows('ClusterRole/rdl-csi-resizer', '', 'persistentvolumes', 'patch'));
  t.true(allows('Role/rdl-csi-leader-election', 'coordination.k8s.io', 'leases', 'update'));
});

test('kustomization.yaml lists every manifest', (t) => {
  const kustomization = parseAllDocuments(readFileSync(join(manifestDir, 'kustomization.yaml'), 'utf8'))[0].toJS();
  t.is(kustomization.kind, 'Kustomization');
  t.deepEqual([...kustomization.resources].sort(), [...manifestFiles].sort());
});

test("the image's ENTRYPOINT and bin/rdl-agent.js's shebang pass AGENT_NODE_FLAGS", (t) => {
  const dockerfile = readFileSync(join(manifestDir, 'Dockerfile'), 'utf8');
  const entrypoint = dockerfile.split('\n').find((line) => line.startsWith('ENTRYPOINT '));
  t.is(
    entrypoint,
    `ENTRYPOINT ${JSON.stringify(['node', ...AGENT_NODE_FLAGS, 'packages/agent/bin/rdl-agent.js'])}`.replace(
      /","/g,
      '", "',
    ),
  );
  const shim = readFileSync(fileURLToPath(new URL('../../../bin/rdl-agent.js', import.meta.url)), 'utf8');
  t.is(shim.split('\n')[0], `#!/usr/bin/env -S node ${AGENT_NODE_FLAGS.join(' ')}`);
  t.true(AGENT_NODE_FLAGS.length > 0);
});
