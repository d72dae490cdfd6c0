import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { ConfigError } from '../../../src/config/load.js';
import { PolicyEngine, resourceName } from '../../../src/policy/engine.js';
import type { AuthorizationInput } from '../../../src/policy/authorizer.js';
import { policyText, type StatementSpec } from '../../helpers/policy-fixtures.js';

// --- fixtures ------------------------------------------------------------------

const PRINCIPAL = 'arn:aws:iam::111122223333:role/KeyUser';
const KEY_ARN = 'arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';

type Attributes = Record<string, string | undefined>;

function input(overrides: Partial<Omit<AuthorizationInput, 'attributes'>> & { attributes?: Attributes } = {}): AuthorizationInput {
  return {
    action: overrides.action ?? 'xks:Encrypt',
    keyStore: overrides.keyStore ?? 'dev',
    externalKeyId: 'externalKeyId' in overrides ? overrides.externalKeyId : 'key-1',
    attributes: {
      awsPrincipalArn: PRINCIPAL,
      kmsKeyArn: KEY_ARN,
      kmsKeyAccount: '111122223333',
      kmsKeyRegion: 'us-east-1',
      kmsOperation: 'Encrypt',
      ...overrides.attributes,
    },
  };
}

function policy(statements: StatementSpec[], extra: Record<string, unknown> = {}): PolicyEngine {
  return PolicyEngine.fromText(policyText(statements, extra));
}

/** A policy with one allow statement carrying the given conditions. */
function allowIf(conditions: StatementSpec['conditions']): PolicyEngine {
  return policy([{ id: 'cond', effect: 'allow', actions: 'xks:*', conditions }]);
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected a ConfigError, but nothing was thrown');
}

function assertIssue(error: ConfigError, prefix: string, expected: string | RegExp): void {
  const issue = error.issues.find((candidate) => candidate.startsWith(prefix));
  assert.ok(issue !== undefined, `no issue starting with "${prefix}"; got:\n${error.issues.join('\n')}`);
  if (typeof expected === 'string') assert.ok(issue.includes(expected), `"${issue}" should say "${expected}"`);
  else assert.match(issue, expected);
}

// --- tests ---------------------------------------------------------------------

describe('PolicyEngine: effects', () => {
  it('allows a request that a statement allows, reporting the statement', () => {
    const engine = policy([{ id: 'allow-dev', effect: 'allow', actions: 'xks:Encrypt', resources: 'keystore/dev/key/*' }]);
    const decision = engine.authorize(input());
    assert.deepEqual(decision, { allowed: true, statementId: 'allow-dev', reason: 'allowed by statement allow-dev' });
  });

  it('lets an explicit deny beat an allow, whichever comes first', () => {
    const allow: StatementSpec = { id: 'allow-all', effect: 'allow', actions: '*' };
    const deny: StatementSpec = { id: 'deny-encrypt', effect: 'deny', actions: 'xks:Encrypt' };
    for (const statements of [[allow, deny], [deny, allow]]) {
      const decision = policy(statements).authorize(input());
      assert.equal(decision.allowed, false);
      assert.equal(decision.statementId, 'deny-encrypt');
      assert.equal(decision.reason, 'denied by statement deny-encrypt');
    }
  });

  it('lets an allow decide when the deny does not match the request', () => {
    const engine = policy([
      { id: 'allow-all', effect: 'allow', actions: '*' },
      { id: 'deny-decrypt', effect: 'deny', actions: 'xks:Decrypt' },
    ]);
    assert.equal(engine.authorize(input({ action: 'xks:Encrypt' })).allowed, true);
    assert.equal(engine.authorize(input({ action: 'xks:Decrypt' })).allowed, false);
  });

  it('denies by default when no statement matches and no default is given', () => {
    const decision = policy([{ id: 'other', effect: 'allow', actions: 'xks:Decrypt' }]).authorize(input());
    assert.deepEqual(decision, { allowed: false, statementId: undefined, reason: 'no statement matched; default effect deny' });
  });

  it('denies everything with an empty policy', () => {
    const engine = PolicyEngine.fromText('version: 1\n');
    assert.equal(engine.authorize(input()).allowed, false);
  });

  it('applies a global default effect of allow', () => {
    const engine = policy([], { defaultEffect: 'allow' });
    const decision = engine.authorize(input());
    assert.equal(decision.allowed, true);
    assert.equal(decision.statementId, undefined);
    assert.equal(decision.reason, 'no statement matched; default effect allow');
  });

  it('applies a per-key-store default effect over the global one', () => {
    const engine = policy([], { defaultEffect: 'deny', keyStores: { dev: { defaultEffect: 'allow' }, prod: { defaultEffect: 'deny' } } });
    assert.equal(engine.authorize(input({ keyStore: 'dev' })).allowed, true);
    assert.equal(engine.authorize(input({ keyStore: 'prod' })).allowed, false);
    assert.equal(engine.authorize(input({ keyStore: 'staging' })).allowed, false, 'unlisted stores use the global default');

    const open = policy([], { defaultEffect: 'allow', keyStores: { prod: { defaultEffect: 'deny' } } });
    assert.equal(open.authorize(input({ keyStore: 'prod' })).allowed, false);
    assert.equal(open.authorize(input({ keyStore: 'dev' })).allowed, true);
  });

  it('lets a matching deny beat a key store default of allow', () => {
    const engine = policy([{ id: 'no-decrypt', effect: 'deny', actions: 'xks:Decrypt' }], { keyStores: { dev: { defaultEffect: 'allow' } } });
    assert.equal(engine.authorize(input({ action: 'xks:Decrypt' })).allowed, false);
    assert.equal(engine.authorize(input({ action: 'xks:Encrypt' })).allowed, true);
  });

  it('does not let an inherited Object property act as a key store default', () => {
    const engine = policy([], { defaultEffect: 'deny' });
    for (const keyStore of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
      assert.equal(engine.authorize(input({ keyStore })).allowed, false, keyStore);
    }
  });
});

describe('PolicyEngine: actions and resources', () => {
  it('matches action globs', () => {
    const engine = policy([{ id: 's', effect: 'allow', actions: 'xks:*' }]);
    for (const action of ['xks:Encrypt', 'xks:Decrypt', 'xks:GetKeyMetadata', 'xks:']) assert.equal(engine.authorize(input({ action })).allowed, true, action);
    for (const action of ['kms:Encrypt', 'XKS:Encrypt', 'axks:Encrypt']) assert.equal(engine.authorize(input({ action })).allowed, false, action);
  });

  it('matches an exact action only', () => {
    const engine = policy([{ id: 's', effect: 'allow', actions: ['xks:Encrypt', 'xks:GetKeyMetadata'] }]);
    assert.equal(engine.authorize(input({ action: 'xks:Encrypt' })).allowed, true);
    assert.equal(engine.authorize(input({ action: 'xks:GetKeyMetadata' })).allowed, true);
    assert.equal(engine.authorize(input({ action: 'xks:Decrypt' })).allowed, false);
    assert.equal(engine.authorize(input({ action: 'xks:EncryptX' })).allowed, false);
  });

  it('supports a prefix glob and a single-character ? glob in actions', () => {
    const engine = policy([{ id: 's', effect: 'allow', actions: ['xks:*crypt', 'xks:Ge?KeyMetadata'] }]);
    assert.equal(engine.authorize(input({ action: 'xks:Encrypt' })).allowed, true);
    assert.equal(engine.authorize(input({ action: 'xks:Decrypt' })).allowed, true);
    assert.equal(engine.authorize(input({ action: 'xks:GetKeyMetadata' })).allowed, true);
    assert.equal(engine.authorize(input({ action: 'xks:GeKeyMetadata' })).allowed, false);
  });

  it('builds resources as keystore/<store>/key/<externalKeyId>', () => {
    assert.equal(resourceName('dev', 'key-1'), 'keystore/dev/key/key-1');
    assert.equal(resourceName('dev', undefined), 'keystore/dev/key/');
  });

  it('matches resource globs per key store', () => {
    const engine = policy([{ id: 's', effect: 'allow', actions: '*', resources: 'keystore/dev/key/*' }]);
    assert.equal(engine.authorize(input({ keyStore: 'dev', externalKeyId: 'anything' })).allowed, true);
    assert.equal(engine.authorize(input({ keyStore: 'prod', externalKeyId: 'anything' })).allowed, false);
    assert.equal(engine.authorize(input({ keyStore: 'dev-2', externalKeyId: 'anything' })).allowed, false);
  });

  it('matches exact key ids', () => {
    const engine = policy([{ id: 's', effect: 'allow', actions: '*', resources: ['keystore/dev/key/key-1', 'keystore/dev/key/key-3'] }]);
    assert.equal(engine.authorize(input({ externalKeyId: 'key-1' })).allowed, true);
    assert.equal(engine.authorize(input({ externalKeyId: 'key-3' })).allowed, true);
    assert.equal(engine.authorize(input({ externalKeyId: 'key-2' })).allowed, false);
    assert.equal(engine.authorize(input({ externalKeyId: 'key-10' })).allowed, false);
  });

  it('treats regex metacharacters in globs literally', () => {
    const engine = policy([{ id: 's', effect: 'allow', actions: '*', resources: ['keystore/dev/key/a.b*', 'keystore/dev/key/(x)+'] }]);
    assert.equal(engine.authorize(input({ externalKeyId: 'a.b' })).allowed, true);
    assert.equal(engine.authorize(input({ externalKeyId: 'a.b.c' })).allowed, true);
    assert.equal(engine.authorize(input({ externalKeyId: 'aXb' })).allowed, false, "'.' is not a wildcard");
    assert.equal(engine.authorize(input({ externalKeyId: '(x)+' })).allowed, true);
    assert.equal(engine.authorize(input({ externalKeyId: 'xx' })).allowed, false);
  });

  it('defaults resources to every resource', () => {
    const engine = policy([{ id: 's', effect: 'allow', actions: 'xks:Encrypt' }]);
    assert.equal(engine.authorize(input({ keyStore: 'any', externalKeyId: 'any' })).allowed, true);
  });

  it('gives requests without a key (health) the resource keystore/<store>/key/', () => {
    const engine = policy([{ id: 's', effect: 'allow', actions: '*', resources: 'keystore/dev/key/?*' }]);
    const explanation = engine.explain(input({ action: 'xks:GetHealthStatus', externalKeyId: undefined }));
    assert.equal(explanation.resource, 'keystore/dev/key/');
    assert.equal(explanation.allowed, false);
  });
});

describe('PolicyEngine: conditions', () => {
  it('StringEquals matches the exact value only', () => {
    const engine = allowIf({ StringEquals: { kmsViaService: 'ebs' } });
    assert.equal(engine.authorize(input({ attributes: { kmsViaService: 'ebs' } })).allowed, true);
    assert.equal(engine.authorize(input({ attributes: { kmsViaService: 'EBS' } })).allowed, false);
    assert.equal(engine.authorize(input({ attributes: { kmsViaService: 'ebs2' } })).allowed, false);
  });

  it('StringNotEquals matches when the value equals none of the listed values', () => {
    const engine = allowIf({ StringNotEquals: { kmsOperation: ['Decrypt', 'ReEncrypt'] } });
    assert.equal(engine.authorize(input({ attributes: { kmsOperation: 'Encrypt' } })).allowed, true);
    assert.equal(engine.authorize(input({ attributes: { kmsOperation: 'Decrypt' } })).allowed, false);
    assert.equal(engine.authorize(input({ attributes: { kmsOperation: 'ReEncrypt' } })).allowed, false);
  });

  it('StringLike matches globs', () => {
    const engine = allowIf({ StringLike: { clientCertificateSubject: 'CN=kms-*.example.com' } });
    assert.equal(engine.authorize(input({ attributes: { clientCertificateSubject: 'CN=kms-1.example.com' } })).allowed, true);
    assert.equal(engine.authorize(input({ attributes: { clientCertificateSubject: 'CN=other.example.com' } })).allowed, false);
  });

  it('StringNotLike matches when no glob matches', () => {
    const engine = allowIf({ StringNotLike: { awsSourceVpce: 'vpce-0bad*' } });
    assert.equal(engine.authorize(input({ attributes: { awsSourceVpce: 'vpce-0123' } })).allowed, true);
    assert.equal(engine.authorize(input({ attributes: { awsSourceVpce: 'vpce-0bad42' } })).allowed, false);
  });

  it('ArnLike matches ARNs component-wise', () => {
    const engine = allowIf({ ArnLike: { awsPrincipalArn: 'arn:aws:iam::*:role/KeyUser' } });
    assert.equal(engine.authorize(input({ attributes: { awsPrincipalArn: 'arn:aws:iam::111122223333:role/KeyUser' } })).allowed, true);
    assert.equal(engine.authorize(input({ attributes: { awsPrincipalArn: 'arn:aws:iam::444455556666:role/KeyUser' } })).allowed, true);
    assert.equal(engine.authorize(input({ attributes: { awsPrincipalArn: 'arn:aws:iam::111122223333:role/Admin' } })).allowed, false);
    assert.equal(engine.authorize(input({ attributes: { awsPrincipalArn: 'arn:aws-cn:iam::111122223333:role/KeyUser' } })).allowed, false);
  });

  it("ArnLike: a '*' in the account component does not swallow ':' into the next component", () => {
    const value = 'arn:aws:iam::111122223333:extra:role/KeyUser';
    const arnLike = allowIf({ ArnLike: { awsPrincipalArn: 'arn:aws:iam::*:role/KeyUser' } });
    assert.equal(arnLike.authorize(input({ attributes: { awsPrincipalArn: value } })).allowed, false);
    // StringLike has no notion of components, so its '*' does cross ':' (the contrast that makes ArnLike necessary).
    const stringLike = allowIf({ StringLike: { awsPrincipalArn: 'arn:aws:iam::*:role/KeyUser' } });
    assert.equal(stringLike.authorize(input({ attributes: { awsPrincipalArn: value } })).allowed, true);
  });

  it("ArnLike: the resource component may contain ':'", () => {
    const engine = allowIf({ ArnLike: { kmsKeyArn: 'arn:aws:kms:us-east-1:111122223333:*' } });
    assert.equal(engine.authorize(input({ attributes: { kmsKeyArn: 'arn:aws:kms:us-east-1:111122223333:key/a:b' } })).allowed, true);
    assert.equal(engine.authorize(input({ attributes: { kmsKeyArn: 'arn:aws:kms:us-west-2:111122223333:key/a' } })).allowed, false);
  });

  it('ArnLike rejects values with a different number of components', () => {
    const engine = allowIf({ ArnLike: { awsPrincipalArn: 'arn:aws:iam::*:*' } });
    assert.equal(engine.authorize(input({ attributes: { awsPrincipalArn: 'not-an-arn' } })).allowed, false);
    assert.equal(engine.authorize(input({ attributes: { awsPrincipalArn: 'arn:aws:iam:111122223333' } })).allowed, false);
  });

  it('ArnNotLike matches when no ARN pattern matches', () => {
    const engine = allowIf({ ArnNotLike: { awsPrincipalArn: 'arn:aws:iam::*:role/Blocked*' } });
    assert.equal(engine.authorize(input({ attributes: { awsPrincipalArn: 'arn:aws:iam::111122223333:role/KeyUser' } })).allowed, true);
    assert.equal(engine.authorize(input({ attributes: { awsPrincipalArn: 'arn:aws:iam::111122223333:role/Blocked1' } })).allowed, false);
  });

  it('conditions on kmsKeyAccount and kmsKeyRegion', () => {
    const engine = allowIf({ StringEquals: { kmsKeyAccount: '111122223333', kmsKeyRegion: ['us-east-1', 'eu-west-1'] } });
    assert.equal(engine.authorize(input()).allowed, true);
    assert.equal(engine.authorize(input({ attributes: { kmsKeyRegion: 'eu-west-1' } })).allowed, true);
    assert.equal(engine.authorize(input({ attributes: { kmsKeyRegion: 'ap-south-1' } })).allowed, false);
    assert.equal(engine.authorize(input({ attributes: { kmsKeyAccount: '999999999999' } })).allowed, false);
  });

  it('a missing attribute fails every positive operator', () => {
    for (const operator of ['StringEquals', 'StringLike', 'ArnLike']) {
      const engine = allowIf({ [operator]: { awsSourceVpce: '*' } });
      assert.equal(engine.authorize(input()).allowed, false, operator);
      assert.equal(engine.authorize(input({ attributes: { awsSourceVpce: undefined } })).allowed, false, operator);
    }
  });

  it('a missing attribute satisfies every negated operator', () => {
    for (const operator of ['StringNotEquals', 'StringNotLike', 'ArnNotLike']) {
      const engine = allowIf({ [operator]: { awsSourceVpce: '*' } });
      assert.equal(engine.authorize(input()).allowed, true, operator);
    }
  });

  it('a missing attribute in a deny condition with a positive operator does not deny', () => {
    const engine = policy(
      [
        { id: 'allow', effect: 'allow', actions: '*' },
        { id: 'deny-vpce', effect: 'deny', actions: '*', conditions: { StringEquals: { awsSourceVpce: 'vpce-0bad' } } },
      ],
    );
    assert.equal(engine.authorize(input()).statementId, 'allow');
    assert.equal(engine.authorize(input({ attributes: { awsSourceVpce: 'vpce-0bad' } })).statementId, 'deny-vpce');
  });

  it('ANDs attributes within an operator and across operators', () => {
    const engine = allowIf({
      StringEquals: { kmsOperation: 'Encrypt', kmsViaService: 'ebs' },
      ArnLike: { awsPrincipalArn: 'arn:aws:iam::111122223333:role/*' },
    });
    assert.equal(engine.authorize(input({ attributes: { kmsViaService: 'ebs' } })).allowed, true);
    assert.equal(engine.authorize(input({ attributes: { kmsViaService: 's3' } })).allowed, false, 'second attribute fails');
    assert.equal(engine.authorize(input({ attributes: { kmsViaService: 'ebs', kmsOperation: 'Decrypt' } })).allowed, false, 'first attribute fails');
    assert.equal(
      engine.authorize(input({ attributes: { kmsViaService: 'ebs', awsPrincipalArn: 'arn:aws:iam::999999999999:role/x' } })).allowed,
      false,
      'the other operator fails',
    );
  });

  it('ORs the values of one condition', () => {
    const engine = allowIf({ StringEquals: { kmsViaService: ['ebs', 's3', 'rds'] } });
    for (const service of ['ebs', 's3', 'rds']) assert.equal(engine.authorize(input({ attributes: { kmsViaService: service } })).allowed, true, service);
    assert.equal(engine.authorize(input({ attributes: { kmsViaService: 'sqs' } })).allowed, false);
  });

  it('conditions on every attribute name are accepted', () => {
    const attributes = [
      'awsPrincipalArn',
      'awsPrincipalAccount',
      'kmsKeyArn',
      'kmsKeyAccount',
      'kmsKeyRegion',
      'kmsOperation',
      'kmsViaService',
      'awsSourceVpc',
      'awsSourceVpce',
      'sigv4AccessKeyId',
      'sigv4Region',
      'clientCertificateSubject',
    ];
    for (const attribute of attributes) {
      const engine = allowIf({ StringEquals: { [attribute]: 'wanted' } });
      assert.equal(engine.authorize({ action: 'xks:Encrypt', keyStore: 'dev', externalKeyId: 'k', attributes: { [attribute]: 'wanted' } }).allowed, true, attribute);
      assert.equal(engine.authorize({ action: 'xks:Encrypt', keyStore: 'dev', externalKeyId: 'k', attributes: { [attribute]: 'other' } }).allowed, false, attribute);
    }
  });
});

describe('PolicyEngine.explain', () => {
  it('lists every matched statement in order and names the deciding one', () => {
    const engine = policy([
      { id: 'allow-all', effect: 'allow', actions: '*' },
      { id: 'allow-dev', effect: 'allow', actions: 'xks:*', resources: 'keystore/dev/key/*' },
      { id: 'prod-only', effect: 'allow', actions: '*', resources: 'keystore/prod/key/*' },
      { id: 'deny-ebs', effect: 'deny', actions: '*', conditions: { StringEquals: { kmsViaService: 'ebs' } } },
      { id: 'deny-decrypt', effect: 'deny', actions: 'xks:Decrypt' },
    ]);
    const allowed = engine.explain(input());
    assert.equal(allowed.allowed, true);
    assert.equal(allowed.statementId, 'allow-all');
    assert.equal(allowed.resource, 'keystore/dev/key/key-1');
    assert.deepEqual(allowed.matched, [
      { id: 'allow-all', effect: 'allow' },
      { id: 'allow-dev', effect: 'allow' },
    ]);

    const denied = engine.explain(input({ action: 'xks:Decrypt', attributes: { kmsViaService: 'ebs' } }));
    assert.equal(denied.allowed, false);
    assert.equal(denied.statementId, 'deny-ebs');
    assert.equal(denied.reason, 'denied by statement deny-ebs');
    assert.deepEqual(denied.matched, [
      { id: 'allow-all', effect: 'allow' },
      { id: 'allow-dev', effect: 'allow' },
      { id: 'deny-ebs', effect: 'deny' },
      { id: 'deny-decrypt', effect: 'deny' },
    ]);
  });

  it('reports an empty match list when the default decides', () => {
    const explanation = policy([{ id: 'x', effect: 'allow', actions: 'xks:Decrypt' }]).explain(input());
    assert.deepEqual(explanation.matched, []);
    assert.equal(explanation.statementId, undefined);
    assert.equal(explanation.allowed, false);
  });

  it('agrees with authorize, which returns only the decision', () => {
    const engine = policy([{ id: 'a', effect: 'allow', actions: '*' }]);
    const { allowed, statementId, reason } = engine.explain(input());
    assert.deepEqual(engine.authorize(input()), { allowed, statementId, reason });
  });
});

describe('PolicyEngine.version', () => {
  it('is the SHA-256 of the policy text', () => {
    const text = 'version: 1\ndefaultEffect: allow\n';
    assert.equal(PolicyEngine.fromText(text).version, createHash('sha256').update(text).digest('hex'));
  });

  it('is stable for the same text and changes with any edit', () => {
    const text = 'version: 1\nstatements:\n  - id: a\n    effect: allow\n    actions: "*"\n';
    const first = PolicyEngine.fromText(text).version;
    assert.equal(PolicyEngine.fromText(text).version, first);
    assert.notEqual(PolicyEngine.fromText(text.replace('allow', 'deny')).version, first);
    assert.notEqual(PolicyEngine.fromText(`${text}# comment\n`).version, first, 'even an edit that does not change the meaning');
  });
});

describe('PolicyEngine.fromText: invalid policies', () => {
  const statement = (extra: string): string => `version: 1\nstatements:\n  - id: s1\n    effect: allow\n    actions: "xks:*"\n${extra}`;

  it('rejects an unknown attribute in a condition, naming the condition', () => {
    const error = configError(() => PolicyEngine.fromText(statement('    conditions:\n      StringEquals:\n        awsPrincipalARN: x\n'), 'policy.yaml'));
    assertIssue(error, 'policy.yaml: statements[0].conditions.StringEquals', 'awsPrincipalARN');
  });

  it('rejects an unknown operator, naming the conditions field', () => {
    const error = configError(() => PolicyEngine.fromText(statement('    conditions:\n      StringEqualsIgnoreCase:\n        kmsOperation: x\n'), 'policy.yaml'));
    assertIssue(error, 'policy.yaml: statements[0].conditions', 'StringEqualsIgnoreCase');
  });

  it('rejects a bad effect', () => {
    const error = configError(() => PolicyEngine.fromText('version: 1\nstatements:\n  - id: s1\n    effect: permit\n    actions: "*"\n', 'policy.yaml'));
    assertIssue(error, 'policy.yaml: statements[0].effect', /allow.*deny/);
  });

  it('rejects a bad default effect for a key store', () => {
    const error = configError(() => PolicyEngine.fromText('version: 1\nkeyStores:\n  dev:\n    defaultEffect: Allow\n', 'policy.yaml'));
    assertIssue(error, 'policy.yaml: keyStores.dev.defaultEffect', /allow.*deny/);
  });

  it('rejects duplicate statement ids', () => {
    const text = 'version: 1\nstatements:\n  - { id: same, effect: allow, actions: "*" }\n  - { id: same, effect: deny, actions: "*" }\n';
    const error = configError(() => PolicyEngine.fromText(text, 'policy.yaml'));
    assert.deepEqual(error.issues, ["policy.yaml: statements: id 'same' is used twice"]);
  });

  it('rejects an unknown top-level key', () => {
    const error = configError(() => PolicyEngine.fromText('version: 1\nstatement: []\n', 'policy.yaml'));
    assertIssue(error, 'policy.yaml: (root)', /Unrecognized key.*statement/);
  });

  it('rejects an unknown key in a statement', () => {
    const error = configError(() => PolicyEngine.fromText(statement('    principal: x\n'), 'policy.yaml'));
    assertIssue(error, 'policy.yaml: statements[0]', /Unrecognized key.*principal/);
  });

  it('rejects a missing or unsupported version', () => {
    assertIssue(configError(() => PolicyEngine.fromText('statements: []\n', 'policy.yaml')), 'policy.yaml: version', 'expected 1');
    assertIssue(configError(() => PolicyEngine.fromText('version: 2\n', 'policy.yaml')), 'policy.yaml: version', 'expected 1');
  });

  it('rejects an empty action list and a bad statement id', () => {
    const error = configError(() => PolicyEngine.fromText('version: 1\nstatements:\n  - { id: "bad id", effect: allow, actions: [] }\n', 'policy.yaml'));
    assertIssue(error, 'policy.yaml: statements[0].id', 'must be 1-64');
    assertIssue(error, 'policy.yaml: statements[0].actions', /Too small/);
  });

  it('reports YAML syntax errors with the file name', () => {
    const error = configError(() => PolicyEngine.fromText('version: 1\nstatements: [\n', 'policy.yaml'));
    assert.ok(error.issues.length > 0);
    for (const issue of error.issues) assert.ok(issue.startsWith('policy.yaml: '), issue);
  });

  it('reports duplicate YAML keys with the file name', () => {
    const error = configError(() => PolicyEngine.fromText('version: 1\nversion: 1\n', 'policy.yaml'));
    assert.ok(error.issues.some((issue) => issue.startsWith('policy.yaml: ') && /unique/i.test(issue)), error.issues.join('\n'));
  });

  it("names the source 'policy' when no file name is given", () => {
    const error = configError(() => PolicyEngine.fromText('version: 3\n'));
    assertIssue(error, 'policy: version', 'expected 1');
  });
});
