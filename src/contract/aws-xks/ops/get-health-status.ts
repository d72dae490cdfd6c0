import { ProxyError } from '../../../errors/proxy-error.js';
import type { MemberSnapshot } from '../../../hsm/member.js';
import type { XksCall, XksDependencies } from '../context.js';
import type { components } from '../openapi-types.js';

type Response = components['schemas']['GetHealthStatusResponse'];

/** Exempt from secondary authorization (spec). Answers from the deep-check cache, probing only stale members. */
export async function getHealthStatus(call: XksCall, deps: XksDependencies): Promise<Response> {
  let fleet: MemberSnapshot[];
  const budget = call.deadline.remainingMs();
  let timer: NodeJS.Timeout | undefined;
  try {
    fleet = await Promise.race([
      deps.health.fleet(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new ProxyError('DEPENDENCY_TIMEOUT', 'The deep health check did not finish in time.')), budget);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
  if (!fleet.some((member) => member.health !== 'UNAVAILABLE')) {
    call.audit.reason = 'no HSM member passed the deep health check';
    throw new ProxyError('INTERNAL', 'No external key manager in the cluster can perform cryptographic operations.');
  }
  return {
    xksProxyFleetSize: deps.proxy.fleetSize,
    xksProxyVendor: deps.proxy.vendor,
    xksProxyModel: deps.proxy.model,
    ekmVendor: deps.proxy.ekmVendor,
    ekmFleetDetails: fleet.slice(0, 10).map((member) => ({ id: member.id, model: member.model, healthStatus: member.health })),
  };
}
