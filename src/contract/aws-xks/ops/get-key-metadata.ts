import { ProxyError } from '../../../errors/proxy-error.js';
import type { KeyDescription } from '../../../hsm/protocol.js';
import { authorize, noteHsm, requireKey, type XksCall, type XksDependencies } from '../context.js';
import type { components } from '../openapi-types.js';

type Request = components['schemas']['GetKeyMetadataRequest'];
type Response = components['schemas']['GetKeyMetadataResponse'];
type KeyUsage = Response['keyUsage'][number];

const USAGE_ORDER: ReadonlyArray<[keyof KeyDescription['usage'], KeyUsage]> = [
  ['encrypt', 'ENCRYPT'],
  ['decrypt', 'DECRYPT'],
  ['wrap', 'WRAP'],
  ['unwrap', 'UNWRAP'],
  ['sign', 'SIGN'],
  ['verify', 'VERIFY'],
  ['derive', 'DERIVE'],
];

export async function getKeyMetadata(call: XksCall, request: Request, deps: XksDependencies): Promise<Response> {
  const key = requireKey(call);
  await authorize(call, deps, 'xks:GetKeyMetadata', request.requestMetadata);
  const lifecycle = deps.lifecycle.metadata(call.store.name, key);
  const version = lifecycle.version;
  call.audit.keyVersion = version;
  const inspected = await deps.keys.describe(key, version, call.deadline);
  noteHsm(call, inspected);
  const { description } = inspected;
  if (description.keyType !== 'AES' || description.valueLength !== 32) {
    call.audit.reason = `key type ${description.keyType}/${String(description.valueLength)} bytes`;
    throw new ProxyError('UNSUPPORTED_OPERATION', 'The external key is not a 256-bit AES key, the only key spec of XKS v1.');
  }
  return {
    keySpec: 'AES_256',
    keyUsage: USAGE_ORDER.filter(([attribute]) => description.usage[attribute]).map(([, name]) => name),
    // Reports the configured status even when disabled: KMS reads it in DescribeKey.
    keyStatus: key.enabled && lifecycle.status === 'ENABLED' ? 'ENABLED' : 'DISABLED',
  };
}
