import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { parse, parseAllDocuments } from 'yaml';
import { ConfigSchema } from '../../../src/config/schema.js';
import { fromRoot } from '../../../src/lib/paths.js';

/**
 * deploy/helm/hyok-proxy rendered with real helm (scripts/ensure-helm.sh): `helm lint --strict` and
 * `helm template` with the default values and each ci/*.yaml, every object validated against the
 * Kubernetes schemas (kubernetes-models) or prometheus-operator's, then the chart's promises checked.
 * No cluster: nothing here is applied.
 */

type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; annotations?: Record<string, string> }; [key: string]: unknown };

const VALIDATORS: Record<string, (object: K8sObject) => void> = {
  'v1/ConfigMap': (object) => new ConfigMap(object as never).validate(),
  'v1/Secret': (object) => new Secret(object as never).validate(),
  'v1/Service': (object) => new Service(object as never).validate(),
  'v1/ServiceAccount': (object) => new ServiceAccount(object as never).validate(),
  'apps/v1/Deployment': (object) => new Deployment(object as never).validate(),
  'autoscaling/v2/HorizontalPodAutoscaler': (object) => new HorizontalPodAutoscaler(object as never).validate(),
  'policy/v1/PodDisruptionBudget': (object) => new PodDisruptionBudget(object as never).validate(),
  'networking.k8s.io/v1/NetworkPolicy': (object) => new NetworkPolicy(object as never).validate(),
  'monitoring.coreos.com/v1/ServiceMonitor': (object) => new ServiceMonitor(object as never).validate(),
};

const CHART = fromRoot('deploy', 'helm', 'hyok-proxy');
const CI_VALUES = readdirSync(join(CHART, 'ci')).filter((name) => name.endsWith('.yaml')).sort();
const helm = execFileSync('bash', [fromRoot('scripts', 'ensure-helm.sh')], { encoding: 'utf8' }).trim();
const helmHome = mkdtempSync(join(tmpdir(), 'hyok-helm-home-'));

function runHelm(args: string[]): { status: number | null; output: string; stdout: string } {
  const result = spawnSync(helm, args, {
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, HELM_CACHE_HOME: join(helmHome, 'cache'), HELM_CONFIG_HOME: join(helmHome, 'config'), HELM_DATA_HOME: join(helmHome, 'data') },
  });
  return { status: result.status, stdout: result.stdout, output: `${result.stdout}\n${result.stderr}` };
}

const valuesArgs = (file: string | undefined): string[] => (file === undefined ? [] : ['-f', file]);

function render(file: string | undefined): K8sObject[] {
  const result = runHelm(['template', 'hyok', CHART, '--namespace', 'kms', ...valuesArgs(file)]);
  assert.equal(result.status, 0, result.output);
  return parseAllDocuments(result.stdout)
    .map((document) => {
      assert.deepEqual(document.errors, [], 'helm output is valid YAML');
      return document.toJS() as K8sObject | null;
    })
    .filter((object): object is K8sObject => object !== null);
}

interface Probe { httpGet: { path: string; port: string; scheme: string } }
interface Container {
  name: string;
  args: string[];
  securityContext: Record<string, unknown>;
  startupProbe: Probe;
  livenessProbe: Probe;
  readinessProbe: Probe;
  ports: Array<{ name: string; containerPort: number }>;
  volumeMounts: Array<{ name: string; mountPath: string; subPath?: string }>;
}
interface Volume { name: string; emptyDir?: object; configMap?: { name: string }; secret?: { secretName: string }; [source: string]: unknown }
interface PodSpec {
  automountServiceAccountToken: boolean;
  securityContext: Record<string, unknown>;
  topologySpreadConstraints?: Array<{ topologyKey: string }>;
  containers: Container[];
  initContainers?: Container[];
  volumes: Volume[];
}

const all = (objects: K8sObject[], kind: string): K8sObject[] => objects.filter((object) => object.kind === kind);
function one(objects: K8sObject[], kind: string, name?: string): K8sObject {
  const found = all(objects, kind).filter((object) => name === undefined || object.metadata.name === name);
  assert.equal(found.length, 1, `one ${kind}${name === undefined ? '' : ` ${name}`}`);
  return found[0] as K8sObject;
}
const podTemplate = (deployment: K8sObject): { metadata: { annotations: Record<string, string> }; spec: PodSpec } =>
  (deployment['spec'] as { template: never }).template;

/** A value by dotted path in the ci values, or the chart default. */
function valueOf(values: Record<string, unknown>, defaults: Record<string, unknown>, path: string): unknown {
  const get = (root: unknown): unknown => path.split('.').reduce<unknown>((node, key) => (node === null || typeof node !== 'object' ? undefined : (node as Record<string, unknown>)[key]), root);
  return get(values) ?? get(defaults);
}

describe('Helm chart deploy/helm/hyok-proxy', () => {
  after(() => rmSync(helmHome, { recursive: true, force: true }));
  const defaults = parse(readFileSync(join(CHART, 'values.yaml'), 'utf8')) as Record<string, unknown>;

  it('has the ci values files the chart promises (standalone, sentinel with mTLS/HPA/ServiceMonitor, cluster with existing Secrets)', () => {
    assert.deepEqual(CI_VALUES, ['cluster-redis-existing-secrets.yaml', 'sentinel-mtls-hpa.yaml', 'standalone-redis.yaml']);
  });

  it('documents every value of values.yaml in the README table', () => {
    const readme = readFileSync(join(CHART, 'README.md'), 'utf8');
    const documented = new Set([...readme.matchAll(/^\| `([A-Za-z0-9.]+)` \|/gm)].map((match) => match[1] ?? ''));
    const wholes = new Set(['config', 'resources', 'probes.startup', 'probes.liveness', 'probes.readiness']);
    const paths: string[] = [];
    const walk = (node: unknown, path: string): void => {
      if (node !== null && typeof node === 'object' && !Array.isArray(node) && Object.keys(node).length > 0 && !wholes.has(path)) {
        for (const [key, child] of Object.entries(node)) walk(child, path === '' ? key : `${path}.${key}`);
      } else paths.push(path);
    };
    walk(defaults, '');
    assert.ok(paths.length > 50);
    const missing = paths.filter((path) => !documented.has(path) && ![...documented].some((entry) => entry.startsWith(`${path}.`)));
    assert.deepEqual(missing, []);
  });

  for (const name of [undefined, ...CI_VALUES]) {
    const file = name === undefined ? undefined : join(CHART, 'ci', name);
    const values = file === undefined ? {} : (parse(readFileSync(file, 'utf8')) as Record<string, unknown>);
    const value = (path: string): unknown => valueOf(values, defaults, path);

    describe(name ?? 'default values', () => {
      let objects: K8sObject[] = [];

      it('passes helm lint --strict', () => {
        const result = runHelm(['lint', '--strict', CHART, ...valuesArgs(file)]);
        assert.equal(result.status, 0, result.output);
        assert.match(result.output, /1 chart\(s\) linted, 0 chart\(s\) failed/);
      });

      it('renders with helm template, every object of a mapped kind and valid against its schema', () => {
        objects = render(file);
        assert.ok(objects.length >= 6, `${objects.length} objects`);
        for (const object of objects) {
          const validate = VALIDATORS[`${object.apiVersion}/${object.kind}`];
          assert.ok(validate !== undefined, `no schema mapped for ${object.apiVersion}/${object.kind}`);
          assert.doesNotThrow(() => validate(object), `${object.kind} ${object.metadata.name}`);
        }
      });

      it('hardens every container and the pod', () => {
        const template = podTemplate(one(objects, 'Deployment'));
        const spec = template.spec;
        assert.equal(spec.automountServiceAccountToken, false);
        assert.equal(spec.securityContext['runAsNonRoot'], true);
        assert.equal(spec.securityContext['runAsUser'], 10001);
        assert.equal(spec.securityContext['runAsGroup'], 10001);
        assert.deepEqual(spec.securityContext['seccompProfile'], { type: 'RuntimeDefault' });
        const containers = [...spec.containers, ...(spec.initContainers ?? [])];
        assert.ok(containers.length >= 1);
        for (const container of containers) {
          const context = container.securityContext;
          assert.equal(context['runAsNonRoot'], true, container.name);
          assert.equal(context['runAsUser'], 10001, container.name);
          assert.equal(context['runAsGroup'], 10001, container.name);
          assert.equal(context['readOnlyRootFilesystem'], true, container.name);
          assert.equal(context['allowPrivilegeEscalation'], false, container.name);
          assert.deepEqual(context['capabilities'], { drop: ['ALL'] }, container.name);
          assert.deepEqual(context['seccompProfile'], { type: 'RuntimeDefault' }, container.name);
        }
        const serviceAccount = all(objects, 'ServiceAccount')[0] as (K8sObject & { automountServiceAccountToken?: boolean }) | undefined;
        assert.equal(serviceAccount?.automountServiceAccountToken, false);
      });

      it('runs serve with the mounted config, probes /ping and /ready over HTTPS on the XKS port, and writes only to emptyDirs', () => {
        const spec = podTemplate(one(objects, 'Deployment')).spec;
        const [container] = spec.containers;
        assert.ok(container !== undefined);
        assert.deepEqual(container.args.slice(0, 3), ['serve', '--config', '/etc/hyok-proxy/hyok-proxy.yaml']);
        assert.deepEqual(container.livenessProbe.httpGet, { path: '/ping', port: 'xks', scheme: 'HTTPS' });
        assert.deepEqual(container.readinessProbe.httpGet, { path: '/ready', port: 'xks', scheme: 'HTTPS' });
        assert.deepEqual(container.startupProbe.httpGet, { path: '/ping', port: 'xks', scheme: 'HTTPS' });
        assert.equal(container.ports.find((port) => port.name === 'xks')?.containerPort, 8443);
        assert.equal(container.ports.find((port) => port.name === 'metrics')?.containerPort, 9464);
        assert.equal(container.ports.some((port) => port.name === 'admin' && port.containerPort === 9443), value('admin.enabled') === true);
        for (const path of ['/tmp', '/var/log/hyok-proxy']) {
          const mount = container.volumeMounts.find((entry) => entry.mountPath === path);
          assert.ok(mount !== undefined, `${path} is mounted`);
          assert.ok(spec.volumes.find((volume) => volume.name === mount.name)?.emptyDir !== undefined, `${path} is an emptyDir`);
        }
        const pkcs11 = value('pkcs11Volume') as { name?: string; mountPath?: string; volume?: Record<string, unknown> };
        if (pkcs11.name !== undefined) {
          assert.ok(container.volumeMounts.some((mount) => mount.name === pkcs11.name && mount.mountPath === pkcs11.mountPath && mount['readOnly' as never] === true));
          const volume = spec.volumes.find((entry) => entry.name === pkcs11.name);
          assert.deepEqual({ ...volume, name: undefined }, { ...pkcs11.volume, name: undefined });
        }
        const annotations = podTemplate(one(objects, 'Deployment')).metadata.annotations;
        assert.match(annotations['checksum/config'] ?? '', /^[0-9a-f]{64}$/);
        assert.match(annotations['checksum/secrets'] ?? '', /^[0-9a-f]{64}$/);
      });

      it('exposes XKS on 443 -> 8443 through an NLB (AWS Load Balancer Controller) and admin/metrics on a ClusterIP Service', () => {
        const xks = one(objects, 'Service', 'hyok-hyok-proxy') as K8sObject & { spec: { type: string; ports: Array<{ port: number; targetPort: string }> } };
        assert.equal(xks.spec.type, 'LoadBalancer');
        assert.deepEqual(xks.spec.ports.map((port) => [port.port, port.targetPort]), [[443, 'xks']]);
        const annotations = xks.metadata.annotations ?? {};
        assert.equal(annotations['service.beta.kubernetes.io/aws-load-balancer-type'], 'external');
        assert.equal(annotations['service.beta.kubernetes.io/aws-load-balancer-nlb-target-type'], 'ip');
        assert.equal(annotations['service.beta.kubernetes.io/aws-load-balancer-scheme'], value('service.scheme'));
        if (name === undefined) assert.equal(annotations['service.beta.kubernetes.io/aws-load-balancer-scheme'], 'internal', 'internal by default');
        const internal = one(objects, 'Service', 'hyok-hyok-proxy-internal') as K8sObject & { spec: { type: string; ports: Array<{ name: string; port: number; targetPort: string }> } };
        assert.equal(internal.spec.type, 'ClusterIP');
        const expected: Array<[string, number, string]> = [['metrics', 9464, 'metrics']];
        if (value('admin.enabled') === true) expected.push(['admin', 9443, 'admin']);
        assert.deepEqual(internal.spec.ports.map((port) => [port.name, port.port, port.targetPort]), expected);
      });

      it('spreads over zones and hosts, keeps a PDB, and makes the HPA, NetworkPolicy and ServiceMonitor only when enabled', () => {
        const deployment = one(objects, 'Deployment');
        const spread = podTemplate(deployment).spec.topologySpreadConstraints ?? [];
        assert.deepEqual(spread.map((constraint) => constraint.topologyKey), ['topology.kubernetes.io/zone', 'kubernetes.io/hostname']);
        const pdb = one(objects, 'PodDisruptionBudget') as K8sObject & { spec: { maxUnavailable: number; selector: { matchLabels: Record<string, string> } } };
        assert.equal(pdb.spec.maxUnavailable, 1);
        assert.deepEqual(pdb.spec.selector.matchLabels, (deployment['spec'] as { selector: { matchLabels: unknown } }).selector.matchLabels);
        const autoscaling = value('autoscaling.enabled') === true;
        assert.equal(all(objects, 'HorizontalPodAutoscaler').length, autoscaling ? 1 : 0);
        assert.equal((deployment['spec'] as { replicas?: number }).replicas, autoscaling ? undefined : value('replicaCount'), 'the HPA owns the replica count');
        if (autoscaling) {
          const hpa = one(objects, 'HorizontalPodAutoscaler') as K8sObject & { spec: { scaleTargetRef: { kind: string; name: string }; metrics: Array<{ resource: { name: string } }> } };
          assert.deepEqual(hpa.spec.scaleTargetRef.kind, 'Deployment');
          assert.equal(hpa.spec.scaleTargetRef.name, deployment.metadata.name);
          assert.equal(hpa.spec.metrics[0]?.resource.name, 'cpu');
        }
        assert.equal(all(objects, 'NetworkPolicy').length, value('networkPolicy.enabled') === true ? 1 : 0);
        const monitors = all(objects, 'ServiceMonitor') as Array<K8sObject & { spec: { endpoints: Array<{ port: string; path: string }>; selector: { matchLabels: Record<string, string> } } }>;
        assert.equal(monitors.length, value('serviceMonitor.enabled') === true ? 1 : 0);
        for (const monitor of monitors) {
          assert.deepEqual(monitor.spec.endpoints.map((endpoint) => [endpoint.port, endpoint.path]), [['metrics', '/metrics']]);
          const internal = one(objects, 'Service', 'hyok-hyok-proxy-internal');
          const labels = internal.metadata['labels' as never] as Record<string, string>;
          for (const [key, label] of Object.entries(monitor.spec.selector.matchLabels)) assert.equal(labels[key], label, `ServiceMonitor selects the internal Service by ${key}`);
        }
      });

      it('renders a config the proxy schema accepts; every file it references is on a mounted volume; no secret in a ConfigMap', () => {
        const configMap = one(objects, 'ConfigMap') as K8sObject & { data: Record<string, string> };
        const text = configMap.data['hyok-proxy.yaml'];
        assert.ok(text !== undefined);
        const parsed = ConfigSchema.safeParse(parse(text));
        assert.ok(parsed.success, parsed.success ? '' : JSON.stringify(parsed.error.issues));
        const config = parsed.data;
        assert.equal(config.server.port, 8443);
        assert.equal(config.metrics.port, 9464);
        assert.equal(config.server.tls.clientAuth.mode, value('clientAuth.mode'));

        // Every path in the rendered config (certificates, PINs, SigV4 keys, Redis secrets, policy, PKCS#11 module) is mounted.
        const spec = podTemplate(one(objects, 'Deployment')).spec;
        const mounts = spec.containers[0]?.volumeMounts ?? [];
        const files = new Set<string>();
        const walk = (node: unknown, key: string): void => {
          if (typeof node === 'string' && (/(File|file|module)$/.test(key) || key === 'file') && node.startsWith('/')) files.add(node);
          else if (Array.isArray(node)) node.forEach((entry) => walk(entry, key));
          else if (node !== null && typeof node === 'object') for (const [child, entry] of Object.entries(node)) walk(entry, child);
        };
        walk(parse(text), '');
        assert.ok(files.has('/etc/hyok-proxy/tls/tls.crt') && files.has('/etc/hyok-proxy/tls/tls.key'));
        const secretsByName = new Map(all(objects, 'Secret').map((secret) => [secret.metadata.name, secret as K8sObject & { stringData?: Record<string, string> }]));
        for (const path of files) {
          if (path.startsWith('/var/log/hyok-proxy/') || (path.startsWith('/opt/pkcs11/') && value('pkcs11Volume.name') === undefined)) continue;
          const mount = mounts.find((entry) => (entry.subPath !== undefined ? path === entry.mountPath : path.startsWith(`${entry.mountPath}/`)));
          assert.ok(mount !== undefined, `${path} is on a mounted volume`);
          // A file from a Secret the chart creates must be one of its keys.
          const volume = spec.volumes.find((entry) => entry.name === mount.name);
          const created = volume?.secret === undefined ? undefined : secretsByName.get(volume.secret.secretName);
          if (created !== undefined) {
            const key = path.slice(mount.mountPath.length + 1);
            assert.ok(Object.hasOwn(created.stringData ?? {}, key), `${path}: key ${key} of Secret ${created.metadata.name}`);
          }
        }
        if (value('policy') !== '') assert.equal(config.policy.file, '/etc/hyok-proxy/policy.yaml');

        // Secret values never reach a ConfigMap; the config holds only references.
        const configMaps = JSON.stringify(all(objects, 'ConfigMap').map((map) => map['data']));
        let secretValues = 0;
        for (const secret of secretsByName.values()) {
          for (const secretValue of Object.values(secret.stringData ?? {})) {
            secretValues += 1;
            assert.ok(!configMaps.includes(JSON.stringify(secretValue).slice(1, -1)), `a value of Secret ${secret.metadata.name} is in a ConfigMap`);
          }
        }
        assert.equal(secretValues > 0, secretsByName.size > 0);
        for (const store of config.keyStores) for (const credential of store.credentials) assert.ok('file' in credential.secretAccessKey);
        for (const member of config.hsm.members) assert.ok('file' in member.pin);

        // The redis block matches redis.mode.
        const mode = value('redis.mode');
        const redis = config.redis;
        if (mode === 'none') {
          assert.equal(redis, undefined);
        } else {
          assert.ok(redis !== undefined);
          assert.deepEqual(
            [redis.url !== undefined, redis.sentinel !== undefined, redis.cluster !== undefined],
            [mode === 'standalone', mode === 'sentinel', mode === 'cluster'],
          );
          if (mode === 'standalone') assert.equal(redis.url, value('redis.url'));
          if (mode === 'sentinel') assert.deepEqual(redis.sentinel, { sentinels: value('redis.sentinel.sentinels'), masterName: value('redis.sentinel.masterName') });
          if (mode === 'cluster') assert.deepEqual(redis.cluster, { nodes: value('redis.cluster.nodes') });
          assert.ok('file' in redis.decisionSigningKey);
          const password = (value('secrets.redisPassword.existingSecret') as string) !== '' || (value('secrets.redisPassword.value') as string) !== '';
          assert.equal(redis.password !== undefined, password);
        }
      });
    });
  }

  describe('bad values are refused, naming the field', () => {
    const cases: Array<[string, string, RegExp]> = [
      ['redis.mode not in none|standalone|sentinel|cluster', 'redis:\n  mode: bogus\n', /redis\/mode|redis\.mode/],
      ['replicaCount not an integer', 'replicaCount: three\n', /replicaCount/],
      ['replicaCount a fraction', 'replicaCount: 2.5\n', /replicaCount/],
      ['server in config (the chart owns it)', 'config:\n  server: { port: 1 }\n', /config\/server|config\.server/],
      ['NLB scheme misspelt', 'service:\n  scheme: public\n', /service\/scheme|service\.scheme/],
      ['unknown top-level value', 'replicas: 3\n', /replicas/],
      ['sentinel mode without sentinels', 'redis:\n  mode: sentinel\n  sentinel: { sentinels: [], masterName: m }\n', /sentinels/],
      ['redis without a decision signing key', 'redis:\n  mode: cluster\n  cluster: { nodes: ["r:6379"] }\n', /secrets\/decisionSigningKey/],
      ['a short decision signing key', 'secrets:\n  decisionSigningKey: { key: k, value: too-short }\n', /secrets\/decisionSigningKey\/value/],
      ['chart-made TLS Secret without a certificate', 'tls:\n  existingSecret: ""\n', /\/tls\/cert/],
      ['client certificates required without allowed names', 'clientAuth:\n  mode: required\n', /clientAuth\/allowedCommonNames/],
      ['PKCS#11 volume without its mount path', 'pkcs11Volume:\n  name: pkcs11\n', /pkcs11Volume/],
    ];
    for (const [label, text, field] of cases) {
      it(label, () => {
        const file = join(helmHome, 'bad.yaml');
        writeFileSync(file, text);
        for (const command of [['lint', '--strict', CHART, '-f', file], ['template', 'hyok', CHART, '-f', file]]) {
          const result = runHelm(command);
          assert.notEqual(result.status, 0, `helm ${command[0]} accepted:\n${text}`);
          assert.match(result.output, field, result.output);
        }
      });
    }
  });
});
