import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parsePolicy, type PolicyDocument } from '../../../src/policy/engine.js';
import { wideningReasons } from '../../../src/policy/widening.js';
import { policyText, type StatementSpec } from '../../helpers/policy-fixtures.js';

// --- fixtures ------------------------------------------------------------------

/** Parses a policy the way the admin API does before comparing. */
function policy(statements: StatementSpec[], extra: Record<string, unknown> = {}): PolicyDocument {
  return parsePolicy(policyText(statements, extra));
}

const ALLOW_DEV: StatementSpec = { id: 'allow-dev', effect: 'allow', actions: 'xks:*', resources: 'keystore/dev/key/*' };
const ALLOW_PROD_EBS: StatementSpec = {
  id: 'allow-prod-ebs',
  effect: 'allow',
  actions: ['xks:Encrypt', 'xks:Decrypt'],
  resources: 'keystore/prod/key/*',
  conditions: { StringEquals: { kmsViaService: 'ebs' } },
};
const DENY_BLOCKED: StatementSpec = { id: 'deny-blocked', effect: 'deny', actions: '*', conditions: { ArnLike: { awsPrincipalArn: 'arn:aws:iam::*:role/Blocked*' } } };

const BASE = policy([ALLOW_DEV, ALLOW_PROD_EBS, DENY_BLOCKED]);

// --- tests ---------------------------------------------------------------------

describe('wideningReasons: narrowing changes (apply at once)', () => {
  it('finds nothing when the policy is unchanged', () => {
    assert.deepEqual(wideningReasons(BASE, policy([ALLOW_DEV, ALLOW_PROD_EBS, DENY_BLOCKED])), []);
  });

  it('finds nothing when there was no policy: no policy already allows everything', () => {
    assert.deepEqual(wideningReasons(undefined, policy([], { defaultEffect: 'allow' })), []);
  });

  it('treats adding a deny statement as narrowing', () => {
    const after = policy([ALLOW_DEV, ALLOW_PROD_EBS, DENY_BLOCKED, { id: 'deny-decrypt', effect: 'deny', actions: 'xks:Decrypt' }]);
    assert.deepEqual(wideningReasons(BASE, after), []);
  });

  it('treats removing an allow statement as narrowing', () => {
    assert.deepEqual(wideningReasons(BASE, policy([ALLOW_DEV, DENY_BLOCKED])), []);
    assert.deepEqual(wideningReasons(BASE, policy([DENY_BLOCKED])), []);
  });

  it('treats turning an allow statement into a deny (same id) as narrowing', () => {
    assert.deepEqual(wideningReasons(BASE, policy([{ ...ALLOW_DEV, effect: 'deny' }, ALLOW_PROD_EBS, DENY_BLOCKED])), []);
  });

  it('treats a default effect turning to deny as narrowing', () => {
    const open = policy([ALLOW_DEV], { defaultEffect: 'allow', keyStores: { dev: { defaultEffect: 'allow' } } });
    assert.deepEqual(wideningReasons(open, policy([ALLOW_DEV], { defaultEffect: 'deny', keyStores: { dev: { defaultEffect: 'deny' } } })), []);
  });

  it('ignores reordering statements and reformatting the text', () => {
    assert.deepEqual(wideningReasons(BASE, policy([DENY_BLOCKED, ALLOW_PROD_EBS, ALLOW_DEV])), []);
    const text = [
      '# reformatted, same meaning',
      'version: 1',
      'statements:',
      '  - { id: allow-dev, effect: allow, actions: ["xks:*"], resources: "keystore/dev/key/*" }',
      '  - id: allow-prod-ebs',
      '    effect: allow',
      '    actions: ["xks:Encrypt", "xks:Decrypt"]',
      '    resources: ["keystore/prod/key/*"]',
      '    conditions: { StringEquals: { kmsViaService: [ebs] } }',
      '  - id: deny-blocked',
      '    effect: deny',
      '    actions: "*"',
      '    conditions:',
      '      ArnLike:',
      '        awsPrincipalArn: arn:aws:iam::*:role/Blocked*',
      '',
    ].join('\n');
    assert.deepEqual(wideningReasons(BASE, parsePolicy(text)), []);
  });

  it('treats spelling out a default (resources "*", defaultEffect deny) as no change', () => {
    const implicit = policy([{ id: 'a', effect: 'allow', actions: 'xks:Encrypt' }]);
    const explicit = policy([{ id: 'a', effect: 'allow', actions: 'xks:Encrypt', resources: '*' }], { defaultEffect: 'deny' });
    assert.deepEqual(wideningReasons(implicit, explicit), []);
  });
});

describe('wideningReasons: widening changes (need dual control)', () => {
  it('reports an added allow statement', () => {
    const after = policy([ALLOW_DEV, ALLOW_PROD_EBS, DENY_BLOCKED, { id: 'allow-s3', effect: 'allow', actions: '*', conditions: { StringEquals: { kmsViaService: 's3' } } }]);
    assert.deepEqual(wideningReasons(BASE, after), ['allow statement allow-s3 is added']);
  });

  it('reports a renamed allow statement as added, even with the same content', () => {
    assert.deepEqual(wideningReasons(BASE, policy([{ ...ALLOW_DEV, id: 'allow-dev-2' }, ALLOW_PROD_EBS, DENY_BLOCKED])), ['allow statement allow-dev-2 is added']);
  });

  it('reports a changed allow statement, in actions, resources or conditions', () => {
    const changes: StatementSpec[] = [
      { ...ALLOW_PROD_EBS, actions: ['xks:Encrypt', 'xks:Decrypt', 'xks:GetKeyMetadata'] },
      { ...ALLOW_PROD_EBS, resources: 'keystore/*/key/*' },
      { ...ALLOW_PROD_EBS, conditions: { StringEquals: { kmsViaService: ['ebs', 's3'] } } },
      { ...ALLOW_PROD_EBS, conditions: {} },
    ];
    for (const changed of changes) {
      assert.deepEqual(wideningReasons(BASE, policy([ALLOW_DEV, changed, DENY_BLOCKED])), ['allow statement allow-prod-ebs changes'], JSON.stringify(changed));
    }
  });

  it('reports a changed allow statement even when the change is a tightening (documented: conservative)', () => {
    const tighter = { ...ALLOW_PROD_EBS, conditions: { StringEquals: { kmsViaService: 'ebs', kmsKeyRegion: 'us-east-1' } } };
    assert.deepEqual(wideningReasons(BASE, policy([ALLOW_DEV, tighter, DENY_BLOCKED])), ['allow statement allow-prod-ebs changes']);
  });

  it('reports a removed deny statement', () => {
    assert.deepEqual(wideningReasons(BASE, policy([ALLOW_DEV, ALLOW_PROD_EBS])), ['deny statement deny-blocked is removed']);
  });

  it('reports a changed deny statement, whether it grows or shrinks', () => {
    const narrower = { ...DENY_BLOCKED, actions: 'xks:Decrypt' };
    const wider = { ...DENY_BLOCKED, conditions: { ArnLike: { awsPrincipalArn: ['arn:aws:iam::*:role/Blocked*', 'arn:aws:iam::*:role/Old*'] } } };
    for (const changed of [narrower, wider]) {
      assert.deepEqual(wideningReasons(BASE, policy([ALLOW_DEV, ALLOW_PROD_EBS, changed])), ['deny statement deny-blocked changes']);
    }
  });

  it('reports a deny turned into an allow (same id) both as a changed allow and a changed deny', () => {
    const after = policy([ALLOW_DEV, ALLOW_PROD_EBS, { ...DENY_BLOCKED, effect: 'allow' }]);
    assert.deepEqual(wideningReasons(BASE, after), ['allow statement deny-blocked changes', 'deny statement deny-blocked changes']);
  });

  it('reports the global default effect becoming allow, and every listed key store that inherits it', () => {
    const before = policy([ALLOW_DEV], { keyStores: { dev: { defaultEffect: 'deny' }, prod: { defaultEffect: 'allow' } } });
    const after = policy([ALLOW_DEV], { defaultEffect: 'allow', keyStores: { prod: { defaultEffect: 'allow' } } });
    assert.deepEqual(wideningReasons(before, after), ['the default effect becomes allow', 'the default effect of key store dev becomes allow']);
  });

  it('reports a key store default becoming allow, added or changed', () => {
    assert.deepEqual(wideningReasons(BASE, policy([ALLOW_DEV, ALLOW_PROD_EBS, DENY_BLOCKED], { keyStores: { dev: { defaultEffect: 'allow' } } })), [
      'the default effect of key store dev becomes allow',
    ]);
    const closed = policy([], { keyStores: { prod: { defaultEffect: 'deny' } } });
    assert.deepEqual(wideningReasons(closed, policy([], { keyStores: { prod: { defaultEffect: 'allow' } } })), ['the default effect of key store prod becomes allow']);
  });

  it('reports removing a deny override of a key store under a global allow', () => {
    const before = policy([], { defaultEffect: 'allow', keyStores: { prod: { defaultEffect: 'deny' } } });
    const after = policy([], { defaultEffect: 'allow' });
    assert.deepEqual(wideningReasons(before, after), ['the default effect of key store prod becomes allow']);
  });

  it('keeps a global allow with a key store override to deny narrowing for that store only', () => {
    const before = policy([], { defaultEffect: 'deny' });
    const after = policy([], { defaultEffect: 'allow', keyStores: { prod: { defaultEffect: 'deny' } } });
    // The global default still widens every other store, so the change is widening overall.
    assert.deepEqual(wideningReasons(before, after), ['the default effect becomes allow']);
  });

  it('lists every reason of a change that widens in several ways', () => {
    const after = policy([{ ...ALLOW_DEV, resources: '*' }, { id: 'new-allow', effect: 'allow', actions: '*' }], { defaultEffect: 'allow' });
    assert.deepEqual(wideningReasons(BASE, after), [
      'the default effect becomes allow',
      'allow statement allow-dev changes',
      'allow statement new-allow is added',
      'deny statement deny-blocked is removed',
    ]);
  });
});
