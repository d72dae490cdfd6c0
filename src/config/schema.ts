import { z } from 'zod';

/**
 * The one configuration schema. Objects are strict so a misspelt security
 * setting stops start-up instead of silently falling back to a default.
 * Units are in the field names (Ms, Bytes).
 */

/** A secret is never written inline: it is read from an environment variable or a file. */
export const SecretRefSchema = z.union(
  [
    z.strictObject({ env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name') }),
    z.strictObject({ file: z.string().min(1) }),
  ],
  { error: 'must be { env: NAME } or { file: PATH } (secrets are never written inline)' },
);
export type SecretRef = z.infer<typeof SecretRefSchema>;

/** Spec Appendix A: 20-30 characters, 'A'-'Z' and '2'-'7' only. */
export const ACCESS_KEY_ID_PATTERN = /^[A-Z2-7]{20,30}$/;
/** Spec Appendix A and the KMS console file: 43-64 characters of a-z, A-Z, 0-9, '/', '+' and '='. */
export const SECRET_ACCESS_KEY_PATTERN = /^[A-Za-z0-9/+=]{43,64}$/;
/** XKS external key ids: up to 128 of letters, digits, '-', '.', '_' (spec, "API operations"). */
export const EXTERNAL_KEY_ID_PATTERN = /^[A-Za-z0-9._-]{1,128}$/;
/** The part of XksProxyUriPath before "/kms/xks/v1": empty, or '/'-led segments of [A-Za-z0-9_-]. */
export const URI_PREFIX_PATTERN = /^(\/[A-Za-z0-9_-]+)*$/;
export const XKS_API_PATH_SUFFIX = '/kms/xks/v1';
/** The spec caps XksProxyUriPath (prefix + "/kms/xks/v1") at 128 characters. */
export const MAX_XKS_URI_PATH_LENGTH = 128;

/** The spec's TLS suites (1.3 and 1.2, forward secret, AES-256-GCM or ChaCha20). */
export const DEFAULT_TLS_CIPHERS = [
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
] as const;

const PortSchema = z.number().int().min(0).max(65535);

const ClientAuthSchema = z
  .strictObject({
    /** off: no client certificate asked; optional: verified when presented; required: handshake fails without one. */
    mode: z.enum(['off', 'optional', 'required']).default('off'),
    caFile: z.string().min(1).optional(),
    allowedSubjects: z
      .strictObject({
        commonNames: z.array(z.string().min(1)).default([]),
        dnsNames: z.array(z.string().min(1)).default([]),
      })
      .prefault({}),
  })
  .prefault({})
  .superRefine((value, ctx) => {
    if (value.mode === 'off') return;
    if (value.caFile === undefined) {
      ctx.addIssue({ code: 'custom', path: ['caFile'], message: `is required when mode is '${value.mode}'` });
    }
    if (value.allowedSubjects.commonNames.length === 0 && value.allowedSubjects.dnsNames.length === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['allowedSubjects'],
        message: 'must list at least one commonName or dnsName when client certificates are checked',
      });
    }
  });

const TlsSchema = z.strictObject({
  certFile: z.string().min(1),
  keyFile: z.string().min(1),
  minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
  ciphers: z.array(z.string().min(1)).min(1).default([...DEFAULT_TLS_CIPHERS]),
  clientAuth: ClientAuthSchema,
  /** Watch the config, certificate, CA, policy and secret files and reload when one changes (SIGHUP always reloads). */
  watchFiles: z.boolean().default(true),
});

const LimitsSchema = z
  .strictObject({
    /** Largest request body accepted; the spec's largest legal request is about 24 KiB. */
    maxBodyBytes: z.number().int().min(4096).max(1_048_576).default(65_536),
    /** Largest plaintext or ciphertext accepted; the spec requires at least 4,300 bytes. */
    maxPlaintextBytes: z.number().int().min(4300).max(65_536).default(8192),
    /** Largest AAD accepted; the spec requires at least 8,192 bytes. */
    maxAadBytes: z.number().int().min(8192).max(65_535).default(16_384),
    /** Requests being processed at once before new ones get ThrottlingException. */
    maxInFlightRequests: z.number().int().min(1).default(2048),
    /** Time a request may spend inside the proxy; AWS KMS gives up after 250 ms in total. */
    requestBudgetMs: z.number().int().min(10).max(10_000).default(200),
    headersTimeoutMs: z.number().int().min(1000).default(10_000),
    requestTimeoutMs: z.number().int().min(1000).default(15_000),
    keepAliveTimeoutMs: z.number().int().min(1000).default(65_000),
    maxHeaderBytes: z.number().int().min(4096).max(65_536).default(16_384),
  })
  .prefault({});

const ServerSchema = z.strictObject({
  host: z.string().min(1).default('0.0.0.0'),
  port: PortSchema.default(8443),
  tls: TlsSchema,
  limits: LimitsSchema,
});

const HsmMemberSchema = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 of letters, digits, ".", "_" or "-"'),
  model: z.string().min(1).max(128),
  /** Path of the vendor's PKCS#11 library. */
  module: z.string().min(1),
  tokenLabel: z.string().min(1).max(32),
  pin: SecretRefSchema,
  weight: z.number().int().min(1).max(100).default(1),
  zone: z.string().min(1).optional(),
  /** Agent processes for this member, each with its own PKCS#11 context and session; raise for high-latency network HSMs. */
  agents: z.number().int().min(1).max(32).default(1),
  /** Extra environment for the agent processes (e.g. SOFTHSM2_CONF, P11_KIT_SERVER_ADDRESS). */
  environment: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string()).default({}),
});

const HsmSchema = z
  .strictObject({
    ekmVendor: z.string().min(1).max(128),
    /** Deadline of one HSM operation; a hung HSM costs this much, not a stuck request. */
    callTimeoutMs: z.number().int().min(5).max(5000).default(100),
    /** An operation outstanding this long marks the agent hung: it is killed and its PKCS#11 context rebuilt. */
    hungAfterMs: z.number().int().min(50).max(60_000).default(500),
    /** Time allowed for an agent to load the module, log in and open its session. */
    agentStartTimeoutMs: z.number().int().min(100).max(120_000).default(10_000),
    /** Operations queued on one agent before the member counts as saturated. */
    maxQueuedPerAgent: z.number().int().min(1).max(10_000).default(256),
    /** Upper bound of the agent restart backoff (100 ms doubling); recovery after an HSM returns takes at most this long. */
    maxRestartBackoffMs: z.number().int().min(100).max(60_000).default(5000),
    /** The opossum circuit breaker in front of each member. */
    breaker: z
      .strictObject({
        /** Failures, as a percentage of calls in the rolling window, that open the breaker. */
        errorThresholdPercentage: z.number().min(1).max(100).default(50),
        /** Calls in the window before the percentage counts, so one early failure cannot open it. */
        volumeThreshold: z.number().int().min(1).default(5),
        /** Time open before one trial call is let through (half-open). */
        resetTimeoutMs: z.number().int().min(100).default(1000),
        rollingWindowMs: z.number().int().min(1000).default(10_000),
      })
      .prefault({}),
    /** How often every member's key material is compared (KCV, or a fixed-vector check of the health-check key). */
    keyCheck: z
      .strictObject({
        intervalMs: z.number().int().min(1000).default(60_000),
      })
      .prefault({}),
    members: z.array(HsmMemberSchema).min(1).max(10, 'XKS GetHealthStatus reports at most ten members'),
    healthCheck: z
      .strictObject({
        /** Label of a test key used only by the deep health check, never a customer key (spec, GetHealthStatus). */
        keyLabel: z.string().min(1).default('xks-health-check'),
        /** Pinned KCV (CKA_CHECK_VALUE, hex) of the health-check key. */
        checkValue: z.string().regex(/^[0-9A-Fa-f]{2,64}$/, 'must be hex').optional(),
        intervalMs: z.number().int().min(1000).max(60_000).default(10_000),
        /** The spec forbids returning a cached result older than one minute. */
        maxAgeMs: z.number().int().min(1000).max(60_000).default(60_000),
        /** A member answering slower than this is reported DEGRADED. */
        degradedLatencyMs: z.number().int().min(1).default(50),
      })
      .prefault({}),
  })
  .superRefine((value, ctx) => {
    const seen = new Set<string>();
    value.members.forEach((member, index) => {
      if (seen.has(member.id)) {
        ctx.addIssue({ code: 'custom', path: ['members', index, 'id'], message: `duplicates member id '${member.id}'` });
      }
      seen.add(member.id);
    });
  });

const KeySchema = z.strictObject({
  id: z.string().regex(EXTERNAL_KEY_ID_PATTERN, 'must be 1-128 of letters, digits, ".", "_" or "-" (XKS externalKeyId)'),
  /** CKA_LABEL of the key object on every HSM member; defaults to the id. */
  label: z.string().min(1).max(128).optional(),
  enabled: z.boolean().default(true),
  /** Pinned KCV (CKA_CHECK_VALUE, hex, as `hyok-proxy keys check` prints it): members holding other material are fenced. */
  checkValue: z.string().regex(/^[0-9A-Fa-f]{2,64}$/, 'must be hex').optional(),
  /** Cryptoperiod of a key version: the rotation scheduler makes a new version when the current one is older. */
  rotationPeriodDays: z.number().int().min(1).max(3650).optional(),
});

const CredentialSchema = z.strictObject({
  accessKeyId: z.string().regex(ACCESS_KEY_ID_PATTERN, "must be 20-30 characters of 'A'-'Z' and '2'-'7'"),
  secretAccessKey: SecretRefSchema,
});

const KeyStoreSchema = z
  .strictObject({
    name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 of letters, digits, ".", "_" or "-"'),
    /** Path before "/kms/xks/v1", e.g. "/keystores/sales"; "" for none. */
    uriPrefix: z.string().regex(URI_PREFIX_PATTERN, 'must be empty or "/segment[/segment...]" with [A-Za-z0-9_-] segments'),
    credentials: z.array(CredentialSchema).min(1, 'needs at least one SigV4 credential'),
    /** When set, only SigV4 scopes naming these AWS regions are accepted. */
    regions: z.array(z.string().regex(/^[a-z0-9-]{1,32}$/)).optional(),
    rateLimit: z
      .strictObject({
        /** 0 disables the per-key-store quota. */
        requestsPerSecond: z.number().min(0).default(0),
        burst: z.number().int().min(1).default(100),
      })
      .prefault({}),
    keys: z.array(KeySchema).min(1),
  })
  .superRefine((value, ctx) => {
    if (value.uriPrefix.length + XKS_API_PATH_SUFFIX.length > MAX_XKS_URI_PATH_LENGTH) {
      ctx.addIssue({
        code: 'custom',
        path: ['uriPrefix'],
        message: `makes XksProxyUriPath longer than ${MAX_XKS_URI_PATH_LENGTH} characters`,
      });
    }
    const ids = new Set<string>();
    value.keys.forEach((key, index) => {
      if (ids.has(key.id)) ctx.addIssue({ code: 'custom', path: ['keys', index, 'id'], message: `duplicates key id '${key.id}'` });
      ids.add(key.id);
    });
    const akids = new Set<string>();
    value.credentials.forEach((credential, index) => {
      if (akids.has(credential.accessKeyId)) {
        ctx.addIssue({ code: 'custom', path: ['credentials', index, 'accessKeyId'], message: 'duplicates another access key id' });
      }
      akids.add(credential.accessKeyId);
    });
  });

/**
 * Admin roles. operator: members, drills and the kill switch; auditor: read only; key-admin: lifecycle, rotation,
 * policy; approver: dual control only; metrics: GET /metrics only (a Prometheus scraper's identity).
 */
export const ADMIN_ROLES = ['operator', 'auditor', 'key-admin', 'approver', 'metrics'] as const;
export type AdminRole = (typeof ADMIN_ROLES)[number];

const AdminSchema = z
  .strictObject({
    enabled: z.boolean().default(false),
    host: z.string().min(1).default('127.0.0.1'),
    port: PortSchema.default(9443),
    /** Defaults to the data plane's certificate. */
    tls: z.strictObject({ certFile: z.string().min(1), keyFile: z.string().min(1) }).optional(),
    /** mTLS authentication: certificates chained to caFile, roles by subject CN. */
    clientCertificates: z
      .strictObject({
        caFile: z.string().min(1),
        roles: z.record(z.string().min(1), z.array(z.enum(ADMIN_ROLES)).min(1)),
      })
      .optional(),
    /** Bearer JWT authentication, verified with jose against a JWKS that is never fetched on the request path. */
    jwt: z
      .strictObject({
        jwksFile: z.string().min(1).optional(),
        jwksUrl: z.url({ protocol: /^https?$/ }).optional(),
        issuer: z.string().min(1),
        audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
        algorithms: z.array(z.enum(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'])).min(1).default(['RS256', 'ES256', 'EdDSA']),
        /** Claim holding the roles: an array of strings or a space-separated string. */
        rolesClaim: z.string().min(1).default('roles'),
        /** How often a JWKS URL is fetched again in the background. */
        refreshIntervalMs: z.number().int().min(10_000).default(300_000),
        clockToleranceS: z.number().int().min(0).max(300).default(30),
      })
      .superRefine((value, ctx) => {
        if ((value.jwksFile === undefined) === (value.jwksUrl === undefined)) {
          ctx.addIssue({ code: 'custom', path: ['jwksFile'], message: 'give exactly one of jwksFile or jwksUrl' });
        }
      })
      .optional(),
  })
  .prefault({})
  .superRefine((value, ctx) => {
    if (value.enabled && value.clientCertificates === undefined && value.jwt === undefined) {
      ctx.addIssue({ code: 'custom', path: ['enabled'], message: 'an enabled admin API needs clientCertificates or jwt authentication' });
    }
  });

const HostPort = z.string().regex(/^[A-Za-z0-9.-]+:\d{1,5}$/, 'must be host:port');

/** Redis: shared decision cache and state-change notifications only. Never the source of truth, never required. */
const RedisSchema = z
  .strictObject({
    /** Single node: redis://[user@]host:port[/db] or rediss:// for TLS. */
    url: z.string().regex(/^rediss?:\/\/[^\s]+$/, 'must be a redis:// or rediss:// URL').optional(),
    sentinel: z.strictObject({ sentinels: z.array(HostPort).min(1), masterName: z.string().min(1) }).optional(),
    cluster: z.strictObject({ nodes: z.array(HostPort).min(1) }).optional(),
    password: SecretRefSchema.optional(),
    /** MAC key for decisions shared in Redis (same on every replica, at least 32 characters): Redis can then not forge a decision. */
    decisionSigningKey: SecretRefSchema,
    /** A command slower than this counts as failed and the proxy carries on without Redis. */
    commandTimeoutMs: z.number().int().min(1).max(1000).default(5),
    keyPrefix: z.string().regex(/^[A-Za-z0-9:_-]{1,32}$/).default('hyok:'),
    breaker: z
      .strictObject({
        errorThresholdPercentage: z.number().min(1).max(100).default(50),
        volumeThreshold: z.number().int().min(1).default(10),
        resetTimeoutMs: z.number().int().min(100).default(2000),
        rollingWindowMs: z.number().int().min(1000).default(10_000),
      })
      .prefault({}),
  })
  .superRefine((value, ctx) => {
    const modes = [value.url, value.sentinel, value.cluster].filter((entry) => entry !== undefined).length;
    if (modes !== 1) ctx.addIssue({ code: 'custom', path: [], message: 'give exactly one of url, sentinel or cluster' });
  });
export type RedisConfig = z.infer<typeof RedisSchema>;

const LogDestinationSchema = z.union([z.literal('stdout'), z.literal('stderr'), z.strictObject({ file: z.string().min(1) })]);

export const ConfigSchema = z
  .strictObject({
    server: ServerSchema,
    proxy: z
      .strictObject({
        vendor: z.string().min(1).max(128).default('hyok-proxy'),
        model: z.string().min(1).max(128).optional(),
        /** Replicas behind the load balancer, reported to AWS KMS as xksProxyFleetSize. */
        fleetSize: z.number().int().min(1).default(1),
      })
      .prefault({}),
    hsm: HsmSchema,
    keyStores: z.array(KeyStoreSchema).min(1),
    policy: z
      .strictObject({
        /** Policy file (YAML); without one (and without a managed policy) every authenticated request for a configured key is allowed. */
        file: z.string().min(1).optional(),
        /** file: the file is the policy (changes go through your deployment review); managed: the admin API changes it, widening needs dual control. */
        source: z.enum(['file', 'managed']).default('file'),
        /** How long a cached decision lives, in the process and in Redis. */
        decisionTtlMs: z.number().int().min(0).max(3_600_000).default(60_000),
        /** Decisions held in the in-process LRU. */
        decisionCacheEntries: z.number().int().min(0).max(1_000_000).default(10_000),
      })
      .prefault({}),
    redis: RedisSchema.optional(),
    /** Fleet state (lifecycle, kill switches, approvals; ADR 0004). */
    state: z
      .strictObject({
        /** How often the state is re-read from the HSMs when no Redis notification comes. */
        syncIntervalMs: z.number().int().min(500).default(5000),
        /** Run scheduled key rotations on this replica (give it to one replica or a CronJob). */
        rotationScheduler: z.boolean().default(false),
      })
      .prefault({}),
    dualControl: z
      .strictObject({
        /** Distinct approvers needed, none of them the requester. */
        requiredApprovals: z.number().int().min(1).max(5).default(2),
        windowMinutes: z.number().int().min(1).max(7 * 24 * 60).default(60),
      })
      .prefault({}),
    audit: z
      .strictObject({
        destination: LogDestinationSchema.default('stdout'),
      })
      .prefault({}),
    logging: z
      .strictObject({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
        destination: LogDestinationSchema.default('stderr'),
      })
      .prefault({}),
    admin: AdminSchema,
    metrics: z
      .strictObject({
        enabled: z.boolean().default(true),
        host: z.string().min(1).default('127.0.0.1'),
        port: PortSchema.default(9464),
      })
      .prefault({}),
  })
  .superRefine((value, ctx) => {
    const prefixes = new Map<string, number>();
    value.keyStores.forEach((store, index) => {
      const previous = prefixes.get(store.uriPrefix);
      if (previous !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['keyStores', index, 'uriPrefix'],
          message: `is already used by keyStores[${previous}]`,
        });
      }
      prefixes.set(store.uriPrefix, index);
    });
    const names = new Set<string>();
    value.keyStores.forEach((store, index) => {
      if (names.has(store.name)) ctx.addIssue({ code: 'custom', path: ['keyStores', index, 'name'], message: `duplicates key store name '${store.name}'` });
      names.add(store.name);
    });
  });

export type Config = z.infer<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;
export type HsmMemberConfig = Config['hsm']['members'][number];
export type KeyStoreConfig = Config['keyStores'][number];
export type KeyConfig = KeyStoreConfig['keys'][number];
export type LogDestination = z.infer<typeof LogDestinationSchema>;
