import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { parse, parseAllDocuments } from 'yaml';
import { ConfigSchema } from '../../../src/config/schema.js';
import { fromRoot } from '../../../src/lib/paths.js';

/** Renders the chart with real helm (scripts/ensure-helm.sh) and validates every object it makes. */

type K8sObject = { apiVersion: string; kind: string; metadata: { name: string }; [key: string]: unknown };
type Validator = (object: K8sObject) => void;

const VALIDATORS: Record<string, Validator> = {
  'v1/ConfigMap': (object) => new ConfigMap(object as never).validate(),
  'v1/Secret': (object) => new Secret(object as never).validate(),
  'v1/Service': (object) => new Service(object as never).validate(),
  'v1/ServiceAccount': (object) => new ServiceAccount(object as never).validate(),
  'apps/v1/Deployment': (object) => new Deployment(object as never).validate(),
  'autoscaling/v2/HorizontalPodAutoscaler': (object) => new HorizontalPodAutoscaler(object as never).validate(),
  'policy/v1/PodDisruptionBudget': (object) => new PodDisruptionBudget(object as never).validate(),
  'monitoring.coreos.com/v1/ServiceMonitor': (object) => new ServiceMonitor(object as never).validate(),
};

const CHART = fromRoot('deploy', 'helm', 'hyok-proxy');
const CI_VALUES = readdirSync(join(CHART, 'ci')).filter((name) => name.endsWith('.yaml'));
const helm = execFileSync('bash', [fromRoot('scripts', 'ensure-helm.sh')], { encoding: 'utf8' }).trim();

function runHelm(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(helm, args, { encoding: 'utf8', timeout: 60_000, env: { ...process.env, HELM_CACHE_HOME: join(tmpdir(), 'hyok-helm-cache'), HELM_CONFIG_HOME: join(tmpdir(), 'hyok-helm-config') } });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function render(valuesFile: string | undefined): K8sObject[] {
  const result = runHelm(['template', 'hyok', CHART, '--namespace', 'kms', ...(valuesFile === undefined ? [] : ['-f', join(CHART, 'ci', valuesFile)])]);
  assert.equal(result.status, 0, result.stderr);
  return parseAllDocuments(result.stdout)
    .map((document) => document.toJS() as K8sObject | null)
    .filter((object): object is K8sObject => object !== null);
}

const find = (objects: K8sObject[], kind: string, name?: string): K8sObject | undefined => objects.find((object) => object.kind === kind && (name === undefined || object.metadata.name === name));
interface Container {
  name: string;
  securityContext: Record<string, unknown>;
  livenessProbe: { httpGet: { path: string; port: string; scheme: string } };
  readinessProbe: { httpGet: { path: string; port: string; scheme: string } };
  startupProbe: { httpGet: { path: string } };
  ports: Array<{ name: string; containerPort: number }>;
  volumeMounts: Array<{ name: string; mountPath: string }>;
  args: string[];
}
const podSpec = (deployment: K8sObject): Record<string, unknown> & { containers: Container[]; securityContext: Record<string, unknown>; volumes: Array<{ name: string }> } =>
  ((deployment['spec'] as { template: { spec: unknown } }).template.spec) as never;

describe('Helm chart deploy/helm/hyok-proxy', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'hyok-helm-'));
  after(() => rmSync(scratch, { recursive: true, force: true }));

  for (const valuesFile of [undefined, ...CI_VALUES]) {
    const label = valuesFile ?? 'default values';
    describe(label, () => {
      it('passes helm lint --strict', () => {
        const result = runHelm(['lint', '--strict', CHART, ...(valuesFile === undefined ? [] : ['-f', join(CHART, 'ci', valuesFile)])]);
        assert.equal(result.status, 0, result.stdout + result.stderr);
      });

      const objects = render(valuesFile);
      const values = valuesFile === undefined ? {} : (parse(execFileSync('cat', [join(CHART, 'ci', valuesFile)], { encoding: 'utf8' })) as Record<string, never>);

      it('renders only kinds with a schema, and every object validates against the Kubernetes (or prometheus-operator) schema', () => {
        assert.ok(objects.length >= 5);
        for (const object of objects) {
          const validate = VALIDATORS[`${object.apiVersion}/${object.kind}`];
          assert.ok(validate !== undefined, `no schema mapped for ${object.apiVersion}/${object.kind}`);
          assert.doesNotThrow(() => validate(object), `${object.kind} ${object.metadata.name}`);
        }
      });

      it('hardens the pod: non-root, read-only root, no privilege escalation, no capabilities, seccomp, no service-account token', () => {
        const deployment = find(objects, 'Deployment');
        assert.ok(deployment !== undefined);
        const spec = podSpec(deployment);
        assert.equal(spec['automountServiceAccountToken'], false);
        assert.equal(spec.securityContext['runAsNonRoot'], true);
        assert.equal((spec.securityContext['seccompProfile'] as { type: string }).type, 'RuntimeDefault');
        for (const container of spec.containers) {
          assert.equal(container.securityContext['readOnlyRootFilesystem'], true, container.name);
          assert.equal(container.securityContext['allowPrivilegeEscalation'], false, container.name);
          assert.deepEqual((container.securityContext['capabilities'] as { drop: string[] }).drop, ['ALL'], container.name);
        }
      });

      it('probes /ping for liveness and /ready for readiness over HTTPS on the XKS port', () => {
        const [container] = podSpec(find(objects, 'Deployment') as K8sObject).containers;
        assert.ok(container !== undefined);
        assert.deepEqual(container.livenessProbe.httpGet, { path: '/ping', port: 'xks', scheme: 'HTTPS' });
        assert.deepEqual(container.readinessProbe.httpGet, { path: '/ready', port: 'xks', scheme: 'HTTPS' });
        assert.equal(container.startupProbe.httpGet.path, '/ping');
        assert.equal(container.ports.find((port) => port.name === 'xks')?.containerPort, 8443);
      });

      it('exposes XKS on 443 through a network load balancer and keeps admin and metrics internal', () => {
        const xks = find(objects, 'Service', 'hyok-hyok-proxy') as K8sObject & { spec: { type: string; ports: Array<{ port: number; targetPort: string }> }; metadata: { annotations: Record<string, string> } };
        assert.equal(xks.spec.type, 'LoadBalancer');
        assert.deepEqual(xks.spec.ports.map((port) => [port.port, port.targetPort]), [[443, 'xks']]);
        assert.equal(xks.metadata.annotations['service.beta.kubernetes.io/aws-load-balancer-type'], 'external');
        const internal = find(objects, 'Service', 'hyok-hyok-proxy-internal') as K8sObject & { spec: { type: string; ports: Array<{ name: string }> } };
        assert.equal(internal.spec.type, 'ClusterIP');
        assert.ok(internal.spec.ports.some((port) => port.name === 'metrics'));
      });

      it('spreads pods over zones and hosts, keeps a disruption budget, and scales by HPA when asked', () => {
        const deployment = find(objects, 'Deployment') as K8sObject;
        const spread = podSpec(deployment)['topologySpreadConstraints'] as Array<{ topologyKey: string }>;
        assert.deepEqual(spread.map((constraint) => constraint.topologyKey), ['topology.kubernetes.io/zone', 'kubernetes.io/hostname']);
        assert.ok(find(objects, 'PodDisruptionBudget') !== undefined);
        const autoscaling = (values['autoscaling'] as { enabled?: boolean } | undefined)?.enabled === true;
        assert.equal(find(objects, 'HorizontalPodAutoscaler') !== undefined, autoscaling);
        assert.equal((deployment['spec'] as { replicas?: number }).replicas === undefined, autoscaling, 'the HPA owns the replica count');
        const monitored = (values['serviceMonitor'] as { enabled?: boolean } | undefined)?.enabled === true;
        assert.equal(find(objects, 'ServiceMonitor') !== undefined, monitored);
      });

      it('renders a config the proxy accepts, with every secret a file on a mounted Secret and no secret in a ConfigMap', () => {
        const configMap = find(objects, 'ConfigMap') as K8sObject & { data: Record<string, string> };
        const text = configMap.data['hyok-proxy.yaml'] as string;
        const parsed = ConfigSchema.safeParse(parse(text));
        assert.ok(parsed.success, parsed.success ? '' : JSON.stringify(parsed.error.issues));
        const config = parsed.data;
        const mounts = podSpec(find(objects, 'Deployment') as K8sObject).containers[0]?.volumeMounts.map((mount) => mount.mountPath) ?? [];
        for (const path of text.match(/\/etc\/hyok-proxy\/[^\s"']+/g) ?? []) {
          assert.ok(mounts.some((mount) => path === mount || path.startsWith(`${mount}/`)), `${path} is mounted`);
        }
        for (const secret of objects.filter((object) => object.kind === 'Secret')) {
          for (const value of Object.values((secret['stringData'] ?? {}) as Record<string, string>)) {
            if (value.length >= 8) assert.ok(!JSON.stringify(configMap.data).includes(value), `a value of Secret ${secret.metadata.name} appears in the ConfigMap`);
          }
        }
        const mode = (values['redis'] as { mode?: string } | undefined)?.mode ?? 'none';
        const redis = config.redis;
        if (mode === 'none') assert.equal(redis, undefined);
        else if (mode === 'standalone') assert.ok(redis?.url !== undefined && redis.password !== undefined);
        else if (mode === 'sentinel') assert.equal(redis?.sentinel?.sentinels.length, 3);
        else assert.equal(redis?.cluster?.nodes.length, 3);
        const clientAuth = (values['clientAuth'] as { mode?: string } | undefined)?.mode ?? 'off';
        assert.equal(config.server.tls.clientAuth.mode, clientAuth);
        assert.equal(config.server.port, 8443);
      });
    });
  }

  it('refuses bad values with a message naming the field (values.schema.json)', () => {
    const cases: Array<[string, RegExp]> = [
      ['redis:\n  mode: bogus\n', /redis\.mode|mode/],
      ['replicaCount: three\n', /replicaCount/],
      ['config:\n  hsm: {}\n  keyStores: []\n  server: { port: 1 }\n', /config/],
    ];
    for (const [text, field] of cases) {
      const file = join(scratch, 'bad.yaml');
      writeFileSync(file, text);
      const result = runHelm(['template', 'hyok', CHART, '-f', file]);
      assert.notEqual(result.status, 0, text);
      assert.match(result.stderr, field, result.stderr);
    }
  });
});
