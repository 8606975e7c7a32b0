// Argo CD's cluster Secrets (src/controller/sync/clusters.ts): what a Secret must hold, and which
// cluster a destination names. The connections themselves run against a second real control
// plane in test/integration/application-clusters.test.ts.
import { describe, expect, test } from '@jest/globals';
import {
  ClusterError,
  clusterKubeConfig,
  IN_CLUSTER_NAME,
  parseClusterSecret,
  resolveDestination,
  type ClusterSecret,
} from '../../../../src/controller/sync/clusters.ts';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const secret = (data: Record<string, string>) => ({
  metadata: { name: 'cluster-prod', namespace: 'kube-actions' },
  data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])),
});
const parsed = (data: Record<string, string>) => {
  const c = parseClusterSecret(secret(data));
  if (typeof c === 'string') throw new Error(c);
  return c;
};

describe('parseClusterSecret', () => {
  test('name, server (without a trailing slash) and config; the name defaults to the server', () => {
    const c = parsed({
      name: 'prod',
      server: 'https://prod.example:6443/',
      config: JSON.stringify({ bearerToken: 't', tlsClientConfig: { caData: b64('CA') } }),
    });
    expect(c).toMatchObject({
      name: 'prod',
      server: 'https://prod.example:6443',
      config: { bearerToken: 't' },
    });
    expect(parsed({ server: 'https://prod.example' }).name).toBe('https://prod.example');
  });

  test('a changed token changes the digest (the connection is rebuilt); the same Secret keeps it', () => {
    const a = parsed({ server: 'https://p', config: '{"bearerToken":"one"}' });
    expect(parsed({ server: 'https://p', config: '{"bearerToken":"one"}' }).digest).toBe(a.digest);
    expect(parsed({ server: 'https://p', config: '{"bearerToken":"two"}' }).digest).not.toBe(a.digest);
  });

  test('what cannot be used is said, naming the Secret and never its token', () => {
    const problem = (data: Record<string, string>) => parseClusterSecret(secret(data)) as string;
    expect(problem({})).toBe('cluster Secret kube-actions/cluster-prod: server is required');
    expect(problem({ server: 'prod' })).toMatch(/is not a URL/);
    expect(problem({ server: 'ftp://prod' })).toMatch(/must be an https URL/);
    expect(problem({ server: 'https://p', config: '{bearerToken' })).toMatch(/config is not JSON/);
    expect(problem({ server: 'https://p', config: '[]' })).toMatch(/not a JSON object/);
    expect(problem({ server: 'https://p', config: '{"execProviderConfig":{"command":"aws"}}' })).toMatch(
      /config.execProviderConfig is not supported/,
    );
    expect(problem({ server: 'https://p', config: '{"tlsClientConfig":{"certData":"x"}}' })).toMatch(
      /both certData and keyData/,
    );
    const plain = problem({ server: 'http://p', config: '{"bearerToken":"s3cret"}' });
    expect(plain).toMatch(/never sent over plain http/);
    expect(plain).not.toContain('s3cret');
  });
});

describe('resolveDestination (Argo CD rules)', () => {
  const prod = parsed({ name: 'prod', server: 'https://prod.example' });
  const local = parsed({
    name: 'in-cluster',
    server: 'https://kubernetes.default.svc',
    config: '{"bearerToken":"x"}',
  });

  test('by server (a trailing slash or not) or by name; the built-in cluster by either of its own', () => {
    expect(resolveDestination({ server: 'https://prod.example/' }, [prod])).toBe(prod);
    expect(resolveDestination({ name: 'prod' }, [prod])).toBe(prod);
    expect(resolveDestination({ server: 'https://kubernetes.default.svc' }, [prod])).toBe(IN_CLUSTER_NAME);
    expect(resolveDestination({ name: 'in-cluster' }, [prod])).toBe(IN_CLUSTER_NAME);
    expect(resolveDestination({}, [])).toBe(IN_CLUSTER_NAME);
  });

  test('a Secret for the built-in address or name takes its place', () => {
    expect(resolveDestination({ server: 'https://kubernetes.default.svc' }, [local])).toBe(local);
    expect(resolveDestination({ name: 'in-cluster' }, [local])).toBe(local);
  });

  test('both, none known, or two of one name: a ClusterError that says which', () => {
    const fails = (d: { server?: string; name?: string }, s: (ClusterSecret | string)[]) => {
      try {
        resolveDestination(d, s);
      } catch (err) {
        expect(err).toBeInstanceOf(ClusterError);
        return (err as Error).message;
      }
      throw new Error('resolved');
    };
    expect(fails({ name: 'prod', server: 'https://prod.example' }, [prod])).toBe(
      "destination can't have both name and server defined: prod https://prod.example",
    );
    expect(fails({ server: 'https://other' }, [prod])).toBe(
      'there are no clusters with this URL: https://other',
    );
    expect(fails({ name: 'staging' }, [prod, 'cluster Secret a/b: server is required'])).toBe(
      'there are no clusters with this name: staging (unusable cluster Secrets: cluster Secret a/b: server is required)',
    );
    expect(fails({ name: 'prod' }, [prod, { ...prod, secret: 'other' }])).toMatch(
      /2 clusters with the name: prod/,
    );
  });
});

test('the kubeconfig carries the token, client certificate and CA as the Secret gives them', () => {
  const kc = clusterKubeConfig(
    parsed({
      name: 'prod',
      server: 'https://prod.example',
      config: JSON.stringify({
        bearerToken: 'tok',
        tlsClientConfig: { caData: 'Q0E=', certData: 'Q0VSVA==', keyData: 'S0VZ', serverName: 'api.prod' },
      }),
    }),
  );
  expect(kc.getCurrentCluster()).toMatchObject({
    server: 'https://prod.example',
    caData: 'Q0E=',
    tlsServerName: 'api.prod',
    skipTLSVerify: false,
  });
  expect(kc.getCurrentUser()).toMatchObject({ token: 'tok', certData: 'Q0VSVA==', keyData: 'S0VZ' });
});
