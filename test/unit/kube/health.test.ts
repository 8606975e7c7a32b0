import { describe, expect, test } from '@jest/globals';
import {
  assessHealth,
  HEALTH_ORDER,
  isContainerErrorReason,
  isWorse,
  worstHealth,
  type HealthStatus,
  type HealthStatusCode,
} from '../../../src/core/kube/health.ts';
import type { KubeResource } from '../../../src/core/kube/resource.ts';

type Json = Record<string, unknown>;

/** Deep-merges plain objects; arrays and scalars in `patch` replace; `undefined` deletes a key. */
function merge<T>(base: T, patch: Json): T {
  const out: Json = { ...(base as Json) };
  for (const [k, v] of Object.entries(patch)) {
    const cur = out[k];
    if (v === undefined) delete out[k];
    else if (isPlain(v) && isPlain(cur)) out[k] = merge(cur, v);
    else out[k] = v;
  }
  return out as T;
}
const isPlain = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

const NOW = new Date('2026-03-01T12:00:00Z');
const ago = (minutes: number) => new Date(NOW.getTime() - minutes * 60_000).toISOString();

interface Case {
  name: string;
  obj: KubeResource;
  status: HealthStatusCode;
  message?: string | RegExp;
}

function runCases(cases: Case[]) {
  test.each(cases)('$name', ({ obj, status, message }) => {
    const health = assessHealth(obj, { now: NOW });
    expect(health?.status).toBe(status);
    if (typeof message === 'string') expect(health?.message).toBe(message);
    else if (message) expect(health?.message).toMatch(message);
  });
}

// --- fixtures shaped like `kubectl get -o json` output ----------------------------------------------

const deployment: KubeResource = {
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: {
    name: 'web',
    namespace: 'shop',
    generation: 3,
    uid: '5c1f6b0e-7f0c-4b9e-9a55-0f3c1b2d7e11',
    resourceVersion: '81723',
    annotations: { 'deployment.kubernetes.io/revision': '3' },
  },
  spec: {
    replicas: 3,
    selector: { matchLabels: { app: 'web' } },
    strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' } },
    progressDeadlineSeconds: 600,
    template: {
      metadata: { labels: { app: 'web' } },
      spec: { containers: [{ name: 'web', image: 'ghcr.io/acme/web:1.4.2' }], restartPolicy: 'Always' },
    },
  },
  status: {
    observedGeneration: 3,
    replicas: 3,
    updatedReplicas: 3,
    readyReplicas: 3,
    availableReplicas: 3,
    conditions: [
      {
        type: 'Available',
        status: 'True',
        reason: 'MinimumReplicasAvailable',
        message: 'Deployment has minimum availability.',
      },
      {
        type: 'Progressing',
        status: 'True',
        reason: 'NewReplicaSetAvailable',
        message: 'ReplicaSet "web-6d4cf56db6" has successfully progressed.',
      },
    ],
  },
};

describe('Deployment', () => {
  runCases([
    { name: 'fully rolled out', obj: deployment, status: 'Healthy' },
    {
      name: 'paused is Suspended, even mid-rollout',
      obj: merge(deployment, { spec: { paused: true }, status: { updatedReplicas: 1 } }),
      status: 'Suspended',
      message: 'Deployment is paused',
    },
    {
      name: 'generation not yet observed',
      obj: merge(deployment, { metadata: { generation: 4 } }),
      status: 'Progressing',
      message: /observed deployment generation less than desired generation/,
    },
    {
      name: 'progress deadline exceeded',
      obj: merge(deployment, {
        status: {
          updatedReplicas: 1,
          availableReplicas: 2,
          conditions: [
            {
              type: 'Progressing',
              status: 'False',
              reason: 'ProgressDeadlineExceeded',
              message: 'ReplicaSet "web-7b9f" has timed out progressing.',
            },
          ],
        },
      }),
      status: 'Degraded',
      message: 'Deployment "web" exceeded its progress deadline',
    },
    {
      name: 'new replicas still being created',
      obj: merge(deployment, { status: { replicas: 4, updatedReplicas: 1 } }),
      status: 'Progressing',
      message: 'Waiting for rollout to finish: 1 out of 3 new replicas have been updated...',
    },
    {
      name: 'old replicas still terminating',
      obj: merge(deployment, { status: { replicas: 4 } }),
      status: 'Progressing',
      message: 'Waiting for rollout to finish: 1 old replicas are pending termination...',
    },
    {
      name: 'updated replicas not yet available',
      obj: merge(deployment, { status: { availableReplicas: 1 } }),
      status: 'Progressing',
      message: 'Waiting for rollout to finish: 1 of 3 updated replicas are available...',
    },
    {
      name: 'one updated replica short of available',
      obj: merge(deployment, { status: { availableReplicas: 2 } }),
      status: 'Progressing',
      message: 'Waiting for rollout to finish: 2 of 3 updated replicas are available...',
    },
    {
      name: 'scaled to zero',
      obj: merge(deployment, {
        spec: { replicas: 0 },
        status: { replicas: 0, updatedReplicas: 0, readyReplicas: 0, availableReplicas: 0 },
      }),
      status: 'Healthy',
    },
    {
      name: 'pending deletion wins over everything',
      obj: merge(deployment, { metadata: { deletionTimestamp: '2026-03-01T11:59:00Z' } }),
      status: 'Progressing',
      message: 'Pending deletion',
    },
  ]);
});

const statefulSet: KubeResource = {
  apiVersion: 'apps/v1',
  kind: 'StatefulSet',
  metadata: { name: 'db', namespace: 'shop', generation: 2 },
  spec: {
    replicas: 3,
    serviceName: 'db',
    podManagementPolicy: 'OrderedReady',
    updateStrategy: { type: 'RollingUpdate', rollingUpdate: { partition: 0 } },
    selector: { matchLabels: { app: 'db' } },
    template: {
      metadata: { labels: { app: 'db' } },
      spec: { containers: [{ name: 'pg', image: 'postgres:16' }] },
    },
  },
  status: {
    observedGeneration: 2,
    replicas: 3,
    readyReplicas: 3,
    currentReplicas: 3,
    updatedReplicas: 3,
    availableReplicas: 3,
    currentRevision: 'db-5b8f7d9c6',
    updateRevision: 'db-5b8f7d9c6',
    collisionCount: 0,
  },
};
const noRollingUpdateBlock = {
  spec: { updateStrategy: { type: 'RollingUpdate', rollingUpdate: undefined } },
};

describe('StatefulSet', () => {
  runCases([
    {
      name: 'rolled out (the apiserver-defaulted partition decides)',
      obj: statefulSet,
      status: 'Healthy',
      message: 'partitioned roll out complete: 3 new pods have been updated...',
    },
    {
      name: 'never observed (observedGeneration 0)',
      obj: merge(statefulSet, { status: { observedGeneration: 0 } }),
      status: 'Progressing',
      message: 'Waiting for statefulset spec update to be observed...',
    },
    {
      name: 'generation ahead of observedGeneration',
      obj: merge(statefulSet, { metadata: { generation: 3 } }),
      status: 'Progressing',
      message: 'Waiting for statefulset spec update to be observed...',
    },
    {
      name: 'pods not ready',
      obj: merge(statefulSet, { status: { readyReplicas: 1 } }),
      status: 'Progressing',
      message: 'Waiting for 2 pods to be ready...',
    },
    {
      name: 'partitioned rollout still updating',
      obj: merge(statefulSet, {
        spec: { updateStrategy: { rollingUpdate: { partition: 2 } } },
        status: { updatedReplicas: 0, updateRevision: 'db-7c9d' },
      }),
      status: 'Progressing',
      message: 'Waiting for partitioned roll out to finish: 0 out of 1 new pods have been updated...',
    },
    {
      name: 'partitioned rollout done up to the partition',
      obj: merge(statefulSet, {
        spec: { updateStrategy: { rollingUpdate: { partition: 2 } } },
        status: { updatedReplicas: 1, updateRevision: 'db-7c9d' },
      }),
      status: 'Healthy',
      message: 'partitioned roll out complete: 1 new pods have been updated...',
    },
    {
      name: 'OnDelete is Healthy once pods are ready, whatever the revision',
      obj: merge(statefulSet, {
        spec: { updateStrategy: { type: 'OnDelete', rollingUpdate: undefined } },
        status: { updatedReplicas: 1, updateRevision: 'db-7c9d' },
      }),
      status: 'Healthy',
      message: 'statefulset has 3 ready pods (1 updated)',
    },
    {
      name: 'no rollingUpdate block: revisions differ',
      obj: merge(merge(statefulSet, noRollingUpdateBlock), {
        status: { updatedReplicas: 1, updateRevision: 'db-7c9d' },
      }),
      status: 'Progressing',
      message: 'waiting for statefulset rolling update to complete 1 pods at revision db-7c9d...',
    },
    {
      name: 'no rollingUpdate block: revisions equal',
      obj: merge(statefulSet, noRollingUpdateBlock),
      status: 'Healthy',
      message: 'statefulset rolling update complete 3 pods at revision db-5b8f7d9c6...',
    },
  ]);
});

const daemonSet: KubeResource = {
  apiVersion: 'apps/v1',
  kind: 'DaemonSet',
  metadata: { name: 'node-agent', namespace: 'kube-system', generation: 5 },
  spec: {
    selector: { matchLabels: { app: 'node-agent' } },
    updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1, maxSurge: 0 } },
    template: { spec: { containers: [{ name: 'agent', image: 'acme/agent:2.0' }] } },
  },
  status: {
    observedGeneration: 5,
    currentNumberScheduled: 4,
    desiredNumberScheduled: 4,
    numberReady: 4,
    numberAvailable: 4,
    updatedNumberScheduled: 4,
    numberMisscheduled: 0,
  },
};

describe('DaemonSet', () => {
  runCases([
    { name: 'rolled out on every node', obj: daemonSet, status: 'Healthy' },
    {
      name: 'generation not observed',
      obj: merge(daemonSet, { metadata: { generation: 6 } }),
      status: 'Progressing',
      message: /observed daemon set generation less than desired generation/,
    },
    {
      name: 'nodes still updating',
      obj: merge(daemonSet, { status: { updatedNumberScheduled: 2 } }),
      status: 'Progressing',
      message:
        'Waiting for daemon set "node-agent" rollout to finish: 2 out of 4 new pods have been updated...',
    },
    {
      name: 'updated pods not yet available',
      obj: merge(daemonSet, { status: { numberAvailable: 3 } }),
      status: 'Progressing',
      message: 'Waiting for daemon set "node-agent" rollout to finish: 3 of 4 updated pods are available...',
    },
    {
      name: 'OnDelete is Healthy with stale pods',
      obj: merge(daemonSet, {
        spec: { updateStrategy: { type: 'OnDelete', rollingUpdate: undefined } },
        status: { updatedNumberScheduled: 1 },
      }),
      status: 'Healthy',
      message: 'daemon set 1 out of 4 new pods have been updated',
    },
  ]);
});

const replicaSet: KubeResource = {
  apiVersion: 'apps/v1',
  kind: 'ReplicaSet',
  metadata: {
    name: 'web-6d4cf56db6',
    namespace: 'shop',
    generation: 1,
    ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'web', controller: true }],
  },
  spec: { replicas: 3, selector: { matchLabels: { app: 'web', 'pod-template-hash': '6d4cf56db6' } } },
  status: {
    replicas: 3,
    fullyLabeledReplicas: 3,
    readyReplicas: 3,
    availableReplicas: 3,
    observedGeneration: 1,
  },
};

describe('ReplicaSet', () => {
  runCases([
    { name: 'all replicas available', obj: replicaSet, status: 'Healthy' },
    {
      name: 'ReplicaFailure (e.g. quota exceeded)',
      obj: merge(replicaSet, {
        status: {
          availableReplicas: 1,
          conditions: [
            {
              type: 'ReplicaFailure',
              status: 'True',
              reason: 'FailedCreate',
              message: 'pods "web-6d4cf56db6-x" is forbidden: exceeded quota: compute, requested: cpu=500m',
            },
          ],
        },
      }),
      status: 'Degraded',
      message: /exceeded quota/,
    },
    {
      name: 'replicas not yet available',
      obj: merge(replicaSet, { status: { availableReplicas: 1 } }),
      status: 'Progressing',
      message: 'Waiting for rollout to finish: 1 out of 3 new replicas are available...',
    },
    {
      name: 'generation not observed',
      obj: merge(replicaSet, { metadata: { generation: 2 } }),
      status: 'Progressing',
      message: /observed replica set generation less than desired generation/,
    },
  ]);
});

const pod: KubeResource = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'web-6d4cf56db6-7xk2p', namespace: 'shop', labels: { app: 'web' } },
  spec: {
    restartPolicy: 'Always',
    nodeName: 'node-1',
    containers: [{ name: 'web', image: 'ghcr.io/acme/web:1.4.2' }],
  },
  status: {
    phase: 'Running',
    podIP: '10.244.1.17',
    startTime: ago(30),
    conditions: [
      { type: 'Initialized', status: 'True', lastTransitionTime: ago(30) },
      { type: 'Ready', status: 'True', lastTransitionTime: ago(29) },
      { type: 'ContainersReady', status: 'True', lastTransitionTime: ago(29) },
      { type: 'PodScheduled', status: 'True', lastTransitionTime: ago(30) },
    ],
    containerStatuses: [
      {
        name: 'web',
        ready: true,
        restartCount: 0,
        image: 'ghcr.io/acme/web:1.4.2',
        imageID: 'ghcr.io/acme/web@sha256:0f1e',
        state: { running: { startedAt: ago(29) } },
      },
    ],
  },
};
const notReady = {
  conditions: [
    { type: 'Ready', status: 'False', reason: 'ContainersNotReady', lastTransitionTime: ago(1) },
    { type: 'PodScheduled', status: 'True', lastTransitionTime: ago(30) },
  ],
};
const waiting = (reason: string, message?: string) => ({
  ...notReady,
  containerStatuses: [
    {
      name: 'web',
      ready: false,
      restartCount: 4,
      image: 'ghcr.io/acme/web:1.4.3',
      state: { waiting: { reason, ...(message ? { message } : {}) } },
    },
  ],
});
const pendingPod = (scheduledCondition: Json) =>
  merge(pod, {
    spec: { nodeName: undefined },
    status: {
      phase: 'Pending',
      conditions: [scheduledCondition],
      containerStatuses: undefined,
      podIP: undefined,
    },
  });
const hookPod = (policy: 'Never' | 'OnFailure', status: Json, annotations?: Record<string, string>) =>
  merge(pod, {
    metadata: { name: 'db-migrate', ...(annotations ? { annotations } : {}) },
    spec: { restartPolicy: policy },
    status,
  });

describe('Pod', () => {
  runCases([
    { name: 'running and ready', obj: pod, status: 'Healthy' },
    {
      name: 'CrashLoopBackOff',
      obj: merge(pod, {
        status: waiting(
          'CrashLoopBackOff',
          'back-off 2m40s restarting failed container=web pod=web-6d4cf56db6-7xk2p',
        ),
      }),
      status: 'Degraded',
      message: 'back-off 2m40s restarting failed container=web pod=web-6d4cf56db6-7xk2p',
    },
    {
      name: 'ImagePullBackOff',
      obj: merge(pod, {
        status: waiting('ImagePullBackOff', 'Back-off pulling image "ghcr.io/acme/web:1.4.3"'),
      }),
      status: 'Degraded',
      message: 'Back-off pulling image "ghcr.io/acme/web:1.4.3"',
    },
    {
      name: 'ErrImagePull without a message reports the reason',
      obj: merge(pod, { status: waiting('ErrImagePull') }),
      status: 'Degraded',
      message: 'ErrImagePull',
    },
    {
      name: 'CreateContainerConfigError',
      obj: merge(pod, { status: waiting('CreateContainerConfigError', 'secret "db-password" not found') }),
      status: 'Degraded',
      message: 'secret "db-password" not found',
    },
    {
      name: 'ContainerCreating is normal progress',
      obj: merge(pod, { status: { ...waiting('ContainerCreating'), phase: 'Pending' } }),
      status: 'Progressing',
    },
    {
      name: 'pending with a message',
      obj: merge(pendingPod({ type: 'PodScheduled', status: 'True', lastTransitionTime: ago(1) }), {
        status: { message: 'Pulling image' },
      }),
      status: 'Progressing',
      message: 'Pulling image',
    },
    {
      name: 'unschedulable for under 5 minutes is still Progressing',
      obj: pendingPod({
        type: 'PodScheduled',
        status: 'False',
        reason: 'Unschedulable',
        message: '0/3 nodes are available: 3 Insufficient cpu.',
        lastTransitionTime: ago(2),
      }),
      status: 'Progressing',
    },
    {
      name: 'unschedulable for over 5 minutes is Degraded',
      obj: pendingPod({
        type: 'PodScheduled',
        status: 'False',
        reason: 'Unschedulable',
        message: '0/3 nodes are available: 3 Insufficient cpu.',
        lastTransitionTime: ago(6),
      }),
      status: 'Degraded',
      message: '0/3 nodes are available: 3 Insufficient cpu.',
    },
    {
      name: 'running, not ready, after a container died: Degraded',
      obj: merge(pod, {
        status: {
          ...notReady,
          containerStatuses: [
            {
              name: 'web',
              ready: false,
              restartCount: 1,
              state: { running: { startedAt: ago(1) } },
              lastState: { terminated: { exitCode: 137, reason: 'Error', finishedAt: ago(1) } },
            },
          ],
        },
      }),
      status: 'Degraded',
    },
    {
      name: 'running, not ready yet, never restarted: Progressing',
      obj: merge(pod, {
        status: {
          ...notReady,
          containerStatuses: [
            { name: 'web', ready: false, restartCount: 0, state: { running: { startedAt: ago(0) } } },
          ],
        },
      }),
      status: 'Progressing',
    },
    {
      name: 'hook pod (Never) running is Progressing even when ready',
      obj: hookPod('Never', {}),
      status: 'Progressing',
    },
    {
      name: 'hook pod (OnFailure) with ImagePullBackOff is not failed early',
      obj: hookPod('OnFailure', {
        ...waiting('ImagePullBackOff', 'Back-off pulling image'),
        phase: 'Pending',
      }),
      status: 'Progressing',
    },
    {
      name: 'ignore-restart-policy annotation judges a Never pod by readiness',
      obj: hookPod('Never', {}, { 'argocd.argoproj.io/ignore-restart-policy': 'true' }),
      status: 'Healthy',
    },
    {
      name: 'succeeded',
      obj: hookPod('Never', {
        phase: 'Succeeded',
        containerStatuses: [
          { name: 'web', ready: false, state: { terminated: { exitCode: 0, reason: 'Completed' } } },
        ],
      }),
      status: 'Healthy',
    },
    {
      name: 'failed with a pod message',
      obj: hookPod('Never', {
        phase: 'Failed',
        reason: 'Evicted',
        message: 'The node was low on resource: memory.',
      }),
      status: 'Degraded',
      message: 'The node was low on resource: memory.',
    },
    {
      name: 'failed: exit code of the first failing container (init containers first)',
      obj: hookPod('Never', {
        phase: 'Failed',
        initContainerStatuses: [
          { name: 'wait-db', state: { terminated: { exitCode: 0, reason: 'Completed' } } },
        ],
        containerStatuses: [{ name: 'migrate', state: { terminated: { exitCode: 3, reason: 'Error' } } }],
      }),
      status: 'Degraded',
      message: 'container "migrate" failed with exit code 3',
    },
    {
      name: 'failed: termination message wins',
      obj: hookPod('Never', {
        phase: 'Failed',
        containerStatuses: [
          {
            name: 'migrate',
            state: {
              terminated: { exitCode: 1, reason: 'Error', message: 'relation "orders" already exists' },
            },
          },
        ],
      }),
      status: 'Degraded',
      message: 'relation "orders" already exists',
    },
    {
      name: 'failed: OOMKilled',
      obj: hookPod('Never', {
        phase: 'Failed',
        containerStatuses: [
          { name: 'migrate', state: { terminated: { exitCode: 137, reason: 'OOMKilled' } } },
        ],
      }),
      status: 'Degraded',
      message: 'OOMKilled',
    },
    {
      name: 'phase Unknown (node lost)',
      obj: merge(pod, { status: { phase: 'Unknown', message: 'node "node-1" is unreachable' } }),
      status: 'Unknown',
      message: 'node "node-1" is unreachable',
    },
  ]);

  test('container error reasons', () => {
    for (const r of [
      'CrashLoopBackOff',
      'ImagePullBackOff',
      'ErrImagePull',
      'InvalidImageName',
      'RunContainerError',
    ]) {
      expect([r, isContainerErrorReason(r)]).toEqual([r, !r.startsWith('Invalid')]);
    }
    expect(isContainerErrorReason('ContainerCreating')).toBe(false);
    expect(isContainerErrorReason('PodInitializing')).toBe(false);
  });

  test('the clock defaults to now', () => {
    const longAgo = pendingPod({
      type: 'PodScheduled',
      status: 'False',
      reason: 'Unschedulable',
      lastTransitionTime: '2020-01-01T00:00:00Z',
    });
    expect(assessHealth(longAgo)?.status).toBe('Degraded');
  });
});

const service: KubeResource = {
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name: 'web', namespace: 'shop' },
  spec: {
    type: 'ClusterIP',
    clusterIP: '10.96.14.3',
    ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }],
    selector: { app: 'web' },
  },
  status: { loadBalancer: {} },
};
const loadBalancer = merge(service, { spec: { type: 'LoadBalancer', externalTrafficPolicy: 'Cluster' } });

describe('Service', () => {
  runCases([
    { name: 'ClusterIP is always Healthy', obj: service, status: 'Healthy' },
    { name: 'LoadBalancer without an address', obj: loadBalancer, status: 'Progressing' },
    {
      name: 'LoadBalancer with an address',
      obj: merge(loadBalancer, {
        status: { loadBalancer: { ingress: [{ ip: '203.0.113.10', ipMode: 'VIP' }] } },
      }),
      status: 'Healthy',
    },
    {
      name: 'LoadBalancer with a hostname',
      obj: merge(loadBalancer, {
        status: { loadBalancer: { ingress: [{ hostname: 'a1b2.elb.us-east-1.amazonaws.com' }] } },
      }),
      status: 'Healthy',
    },
  ]);
});

const ingress: KubeResource = {
  apiVersion: 'networking.k8s.io/v1',
  kind: 'Ingress',
  metadata: { name: 'web', namespace: 'shop', generation: 1 },
  spec: {
    ingressClassName: 'nginx',
    rules: [
      {
        host: 'shop.example.com',
        http: {
          paths: [
            { path: '/', pathType: 'Prefix', backend: { service: { name: 'web', port: { number: 80 } } } },
          ],
        },
      },
    ],
  },
  status: { loadBalancer: { ingress: [{ ip: '203.0.113.20' }] } },
};

describe('Ingress', () => {
  runCases([
    { name: 'address published', obj: ingress, status: 'Healthy' },
    {
      name: 'no address yet',
      obj: merge(ingress, { status: { loadBalancer: { ingress: undefined } } }),
      status: 'Progressing',
    },
    {
      name: 'legacy extensions/v1beta1 Ingress',
      obj: merge(ingress, { apiVersion: 'extensions/v1beta1', status: { loadBalancer: { ingress: [] } } }),
      status: 'Progressing',
    },
  ]);
});

const pvc: KubeResource = {
  apiVersion: 'v1',
  kind: 'PersistentVolumeClaim',
  metadata: { name: 'data-db-0', namespace: 'shop' },
  spec: {
    accessModes: ['ReadWriteOnce'],
    resources: { requests: { storage: '10Gi' } },
    storageClassName: 'standard',
  },
  status: { phase: 'Bound', accessModes: ['ReadWriteOnce'], capacity: { storage: '10Gi' } },
};

describe('PersistentVolumeClaim', () => {
  runCases([
    { name: 'Bound', obj: pvc, status: 'Healthy' },
    { name: 'Pending', obj: merge(pvc, { status: { phase: 'Pending' } }), status: 'Progressing' },
    { name: 'Lost', obj: merge(pvc, { status: { phase: 'Lost' } }), status: 'Degraded' },
    { name: 'no phase', obj: merge(pvc, { status: undefined }), status: 'Unknown' },
  ]);
});

const job: KubeResource = {
  apiVersion: 'batch/v1',
  kind: 'Job',
  metadata: { name: 'db-migrate', namespace: 'shop', generation: 1 },
  spec: {
    backoffLimit: 2,
    completions: 1,
    parallelism: 1,
    suspend: false,
    template: {
      spec: { restartPolicy: 'Never', containers: [{ name: 'migrate', image: 'acme/migrate:7' }] },
    },
  },
  status: { active: 1, ready: 1, startTime: ago(1), uncountedTerminatedPods: {} },
};

describe('Job', () => {
  runCases([
    { name: 'running', obj: job, status: 'Progressing' },
    {
      name: 'complete',
      obj: merge(job, {
        status: {
          active: undefined,
          succeeded: 1,
          completionTime: ago(0),
          conditions: [
            {
              type: 'SuccessCriteriaMet',
              status: 'True',
              reason: 'CompletionsReached',
              message: 'Reached expected number of succeeded pods',
            },
            {
              type: 'Complete',
              status: 'True',
              reason: 'CompletionsReached',
              message: 'Reached expected number of succeeded pods',
            },
          ],
        },
      }),
      status: 'Healthy',
      message: 'Reached expected number of succeeded pods',
    },
    {
      name: 'failed',
      obj: merge(job, {
        status: {
          active: undefined,
          failed: 3,
          conditions: [
            {
              type: 'FailureTarget',
              status: 'True',
              reason: 'BackoffLimitExceeded',
              message: 'Job has reached the specified backoff limit',
            },
            {
              type: 'Failed',
              status: 'True',
              reason: 'BackoffLimitExceeded',
              message: 'Job has reached the specified backoff limit',
            },
          ],
        },
      }),
      status: 'Degraded',
      message: 'Job has reached the specified backoff limit',
    },
    {
      name: 'suspended (condition)',
      obj: merge(job, {
        spec: { suspend: true },
        status: {
          active: undefined,
          conditions: [
            { type: 'Suspended', status: 'True', reason: 'JobSuspended', message: 'Job suspended' },
          ],
        },
      }),
      status: 'Suspended',
      message: 'Job suspended',
    },
    {
      name: 'suspended before the controller wrote the condition',
      obj: merge(job, { spec: { suspend: true }, status: {} }),
      status: 'Suspended',
    },
    {
      name: 'resumed (Suspended=False) and running is Progressing, not Healthy',
      obj: merge(job, {
        status: {
          conditions: [{ type: 'Suspended', status: 'False', reason: 'JobResumed', message: 'Job resumed' }],
        },
      }),
      status: 'Progressing',
    },
  ]);
});

const crd: KubeResource = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'rollouts.kube-actions.dev', generation: 1 },
  spec: {
    group: 'kube-actions.dev',
    names: { kind: 'Rollout', plural: 'rollouts', singular: 'rollout', listKind: 'RolloutList' },
    scope: 'Namespaced',
    versions: [{ name: 'v1alpha1', served: true, storage: true }],
  },
  status: {
    acceptedNames: { kind: 'Rollout', plural: 'rollouts' },
    storedVersions: ['v1alpha1'],
    conditions: [
      { type: 'NamesAccepted', status: 'True', reason: 'NoConflicts', message: 'no conflicts found' },
      {
        type: 'Established',
        status: 'True',
        reason: 'InitialNamesAccepted',
        message: 'the initial names have been accepted',
      },
    ],
  },
};
const crdWith = (...conditions: Json[]) => merge(crd, { status: { conditions } });

describe('CustomResourceDefinition', () => {
  runCases([
    { name: 'established', obj: crd, status: 'Healthy', message: 'CRD is healthy' },
    {
      name: 'no conditions yet',
      obj: merge(crd, { status: { conditions: [] } }),
      status: 'Progressing',
      message: 'Status conditions not found',
    },
    {
      name: 'names conflict',
      obj: crdWith(
        {
          type: 'NamesAccepted',
          status: 'False',
          reason: 'ListKindConflict',
          message: '"RolloutList" is already in use',
        },
        {
          type: 'Established',
          status: 'False',
          reason: 'NotAccepted',
          message: 'not all names are accepted',
        },
      ),
      status: 'Degraded',
      message: 'CRD names have not been accepted: "RolloutList" is already in use',
    },
    {
      name: 'not established',
      obj: crdWith(
        { type: 'NamesAccepted', status: 'True', reason: 'NoConflicts', message: 'no conflicts found' },
        {
          type: 'Established',
          status: 'False',
          reason: 'Installing',
          message: 'the initial names have not been accepted',
        },
      ),
      status: 'Degraded',
      message: 'CRD is not established: the initial names have not been accepted',
    },
    {
      name: 'terminating wins',
      obj: crdWith(
        { type: 'Established', status: 'True', reason: 'InitialNamesAccepted' },
        {
          type: 'Terminating',
          status: 'True',
          reason: 'InstanceDeletionInProgress',
          message: 'CustomResource deletion is in progress',
        },
      ),
      status: 'Progressing',
      message: 'CRD is being terminated: CustomResource deletion is in progress',
    },
    {
      name: 'non-structural schema',
      obj: crdWith(
        { type: 'Established', status: 'True', reason: 'InitialNamesAccepted' },
        {
          type: 'NonStructuralSchema',
          status: 'True',
          reason: 'Violations',
          message: 'spec.versions[0].schema: Required value',
        },
      ),
      status: 'Degraded',
      message: 'Schema violations found: spec.versions[0].schema: Required value',
    },
  ]);
});

const hpa: KubeResource = {
  apiVersion: 'autoscaling/v2',
  kind: 'HorizontalPodAutoscaler',
  metadata: { name: 'web', namespace: 'shop' },
  spec: {
    minReplicas: 2,
    maxReplicas: 10,
    scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web' },
    metrics: [
      {
        type: 'Resource',
        resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } },
      },
    ],
  },
  status: {
    currentReplicas: 2,
    desiredReplicas: 2,
    conditions: [
      {
        type: 'AbleToScale',
        status: 'True',
        reason: 'ReadyForNewScale',
        message: 'recommended size matches current size',
      },
      {
        type: 'ScalingActive',
        status: 'True',
        reason: 'ValidMetricFound',
        message:
          'the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)',
      },
      {
        type: 'ScalingLimited',
        status: 'False',
        reason: 'DesiredWithinRange',
        message: 'the desired count is within the acceptable range',
      },
    ],
  },
};
const v1Conditions = (conditions: Json[]) =>
  merge(hpa, {
    apiVersion: 'autoscaling/v1',
    metadata: { annotations: { 'autoscaling.alpha.kubernetes.io/conditions': JSON.stringify(conditions) } },
    status: { conditions: undefined },
  });

describe('HorizontalPodAutoscaler', () => {
  runCases([
    {
      name: 'v2 scaling normally',
      obj: hpa,
      status: 'Healthy',
      message: 'recommended size matches current size',
    },
    {
      name: 'v2 metric failure listed after AbleToScale=True is still Degraded',
      obj: merge(hpa, {
        status: {
          conditions: [
            {
              type: 'AbleToScale',
              status: 'True',
              reason: 'SucceededGetScale',
              message: "the HPA controller was able to get the target's current scale",
            },
            {
              type: 'ScalingActive',
              status: 'False',
              reason: 'FailedGetResourceMetric',
              message: 'the HPA was unable to compute the replica count: failed to get cpu utilization',
            },
          ],
        },
      }),
      status: 'Degraded',
      message: /unable to compute the replica count/,
    },
    {
      name: 'v2 object metric failure',
      obj: merge(hpa, {
        status: {
          conditions: [
            {
              type: 'ScalingActive',
              status: 'False',
              reason: 'FailedGetObjectMetric',
              message: 'unable to get metric requests-per-second',
            },
          ],
        },
      }),
      status: 'Degraded',
      message: 'unable to get metric requests-per-second',
    },
    {
      name: 'v2 target at its limit',
      obj: merge(hpa, {
        status: {
          conditions: [
            {
              type: 'AbleToScale',
              status: 'False',
              reason: 'BackoffBoth',
              message:
                'the time since the previous scale is still within both the downscale and upscale forbidden windows',
            },
            {
              type: 'ScalingLimited',
              status: 'True',
              reason: 'TooManyReplicas',
              message: 'the desired replica count is more than the maximum replica count',
            },
          ],
        },
      }),
      status: 'Healthy',
      message: 'the desired replica count is more than the maximum replica count',
    },
    {
      name: 'v2 without conditions yet',
      obj: merge(hpa, { status: { conditions: undefined } }),
      status: 'Progressing',
      message: 'Waiting to Autoscale',
    },
    {
      name: 'v1 conditions from the annotation',
      obj: v1Conditions([
        {
          type: 'AbleToScale',
          status: 'True',
          reason: 'SucceededRescale',
          message: 'the HPA controller was able to update the target scale to 3',
        },
      ]),
      status: 'Healthy',
    },
    {
      name: 'v1 failure from the annotation',
      obj: v1Conditions([
        {
          type: 'AbleToScale',
          status: 'False',
          reason: 'FailedGetScale',
          message: 'deployments/scale.apps "web" not found',
        },
      ]),
      status: 'Degraded',
      message: 'deployments/scale.apps "web" not found',
    },
    {
      name: 'v1 without the annotation',
      obj: merge(hpa, { apiVersion: 'autoscaling/v1', status: { conditions: undefined } }),
      status: 'Progressing',
    },
    {
      name: 'v1 with a corrupt annotation',
      obj: merge(hpa, {
        apiVersion: 'autoscaling/v1',
        metadata: { annotations: { 'autoscaling.alpha.kubernetes.io/conditions': '[{' } },
      }),
      status: 'Unknown',
      message: /failed to parse HPA conditions annotation/,
    },
  ]);
});

const apiService: KubeResource = {
  apiVersion: 'apiregistration.k8s.io/v1',
  kind: 'APIService',
  metadata: { name: 'v1beta1.metrics.k8s.io' },
  spec: {
    group: 'metrics.k8s.io',
    version: 'v1beta1',
    groupPriorityMinimum: 100,
    versionPriority: 100,
    service: { name: 'metrics-server', namespace: 'kube-system', port: 443 },
  },
  status: {
    conditions: [{ type: 'Available', status: 'True', reason: 'Passed', message: 'all checks passed' }],
  },
};

describe('APIService', () => {
  runCases([
    { name: 'available', obj: apiService, status: 'Healthy', message: 'Passed: all checks passed' },
    {
      name: 'discovery failing',
      obj: merge(apiService, {
        status: {
          conditions: [
            {
              type: 'Available',
              status: 'False',
              reason: 'FailedDiscoveryCheck',
              message: 'failing or missing response from https://10.96.0.8:443/apis/metrics.k8s.io/v1beta1',
            },
          ],
        },
      }),
      status: 'Progressing',
      message: /^FailedDiscoveryCheck: failing or missing response/,
    },
    {
      name: 'not processed yet',
      obj: merge(apiService, { status: { conditions: undefined } }),
      status: 'Progressing',
      message: 'Waiting to be processed',
    },
  ]);
});

const rollout: KubeResource = {
  apiVersion: 'kube-actions.dev/v1alpha1',
  kind: 'Rollout',
  metadata: { name: 'web', namespace: 'shop', generation: 7 },
  spec: {
    replicas: 5,
    selector: { matchLabels: { app: 'web' } },
    strategy: { canary: { steps: [{ setWeight: 20 }, { pause: {} }, { setWeight: 100 }] } },
  },
  status: {
    observedGeneration: '7',
    phase: 'Healthy',
    replicas: 5,
    updatedReplicas: 5,
    readyReplicas: 5,
    availableReplicas: 5,
    currentPodHash: '6b8f9c7d5',
    stableRS: '6b8f9c7d5',
  },
};
const legacy = (status: Json) =>
  merge(rollout, {
    apiVersion: 'argoproj.io/v1alpha1',
    status: { ...status, phase: undefined, observedGeneration: '7d66d4485f' },
  });

describe('Rollout', () => {
  runCases([
    { name: 'healthy (ours)', obj: rollout, status: 'Healthy' },
    {
      name: 'healthy (argoproj.io)',
      obj: merge(rollout, { apiVersion: 'argoproj.io/v1alpha1' }),
      status: 'Healthy',
    },
    {
      name: 'no status yet',
      obj: merge(rollout, { status: undefined }),
      status: 'Progressing',
      message: 'Waiting for rollout spec update to be observed',
    },
    {
      name: 'spec change not yet observed (string observedGeneration)',
      obj: merge(rollout, { metadata: { generation: 8 } }),
      status: 'Progressing',
      message: 'Waiting for rollout spec update to be observed',
    },
    {
      name: 'numeric observedGeneration is accepted',
      obj: merge(rollout, { status: { observedGeneration: 7 } }),
      status: 'Healthy',
    },
    {
      name: 'paused at a step is Suspended',
      obj: merge(rollout, {
        status: {
          phase: 'Paused',
          message: 'CanaryPauseStep',
          currentStepIndex: 1,
          pauseConditions: [{ reason: 'CanaryPauseStep', startTime: ago(3) }],
        },
      }),
      status: 'Suspended',
      message: 'CanaryPauseStep',
    },
    {
      name: 'progressing phase surfaces the controller message',
      obj: merge(rollout, {
        status: { phase: 'Progressing', message: 'more replicas need to be updated', updatedReplicas: 1 },
      }),
      status: 'Progressing',
      message: 'more replicas need to be updated',
    },
    {
      name: 'degraded phase',
      obj: merge(rollout, {
        status: {
          phase: 'Degraded',
          message: 'ProgressDeadlineExceeded: ReplicaSet "web-6b8f9c7d5" has timed out progressing.',
        },
      }),
      status: 'Degraded',
      message: /^ProgressDeadlineExceeded/,
    },
    {
      name: 'status.abort is Degraded even while the phase still says Progressing',
      obj: merge(rollout, {
        status: {
          abort: true,
          phase: 'Progressing',
          message: 'RolloutAborted: metric "error-rate" assessed Failed',
        },
      }),
      status: 'Degraded',
      message: 'RolloutAborted: metric "error-rate" assessed Failed',
    },
    {
      name: 'status.abort without a message',
      obj: merge(rollout, { status: { abort: true, phase: 'Degraded' } }),
      status: 'Degraded',
      message: 'Rollout aborted',
    },
    {
      name: 'an unknown phase is Unknown',
      obj: merge(rollout, { status: { phase: 'Exploded' } }),
      status: 'Unknown',
      message: /unknown rollout phase "Exploded"/,
    },
    {
      name: 'workloadRef generation not observed',
      obj: merge(rollout, {
        metadata: { annotations: { 'rollout.argoproj.io/workload-generation': '4' } },
        spec: { workloadRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web' } },
        status: { workloadObservedGeneration: '3' },
      }),
      status: 'Progressing',
      message: 'Waiting for rollout spec update to be observed',
    },
    {
      name: 'legacy (no phase): InvalidSpec',
      obj: legacy({
        conditions: [
          {
            type: 'InvalidSpec',
            status: 'True',
            message: 'The Rollout "web" is invalid: spec.strategy: Required value',
          },
        ],
      }),
      status: 'Degraded',
      message: /is invalid/,
    },
    {
      name: 'legacy (no phase): aborted',
      obj: legacy({
        conditions: [
          {
            type: 'Progressing',
            status: 'False',
            reason: 'RolloutAborted',
            message: 'Rollout aborted update to revision 3',
          },
        ],
      }),
      status: 'Degraded',
      message: 'Rollout aborted update to revision 3',
    },
    {
      name: 'legacy (no phase): paused',
      obj: legacy({ pauseConditions: [{ reason: 'CanaryPauseStep', startTime: ago(1) }] }),
      status: 'Suspended',
      message: 'Rollout is paused',
    },
    {
      name: 'legacy (no phase): not reconciled',
      obj: legacy({ currentPodHash: undefined }),
      status: 'Progressing',
      message: 'Waiting for rollout to finish: status has not been reconciled.',
    },
    {
      name: 'legacy (no phase): canary steps pending',
      obj: legacy({ stableRS: '5f7c8d9b4' }),
      status: 'Progressing',
      message: 'Waiting for rollout to finish steps',
    },
    {
      name: 'legacy (no phase): replicas still updating',
      obj: legacy({ updatedReplicas: 2 }),
      status: 'Progressing',
      message: 'Waiting for roll out to finish: More replicas need to be updated',
    },
    { name: 'legacy (no phase): canary complete', obj: legacy({}), status: 'Healthy' },
    {
      name: 'legacy (no phase): blue-green cutover pending',
      obj: merge(legacy({ blueGreen: { activeSelector: '5f7c8d9b4' } }), {
        spec: { strategy: { canary: undefined, blueGreen: { activeService: 'web-active' } } },
      }),
      status: 'Progressing',
      message: 'active service cutover pending',
    },
  ]);
});

describe('custom resources with conditions', () => {
  const certificate: KubeResource = {
    apiVersion: 'cert-manager.io/v1',
    kind: 'Certificate',
    metadata: { name: 'shop-tls', namespace: 'shop', generation: 2 },
    spec: {
      secretName: 'shop-tls',
      dnsNames: ['shop.example.com'],
      issuerRef: { name: 'letsencrypt', kind: 'ClusterIssuer' },
    },
    status: {
      conditions: [
        {
          type: 'Ready',
          status: 'True',
          reason: 'Ready',
          message: 'Certificate is up to date and has not expired',
          observedGeneration: 2,
        },
      ],
      notAfter: '2026-05-30T00:00:00Z',
    },
  };
  const ready = (status: string, extra: Json = {}) =>
    merge(certificate, {
      status: { conditions: [{ type: 'Ready', status, reason: 'X', message: `Ready=${status}`, ...extra }] },
    });

  runCases([
    {
      name: 'Ready=True',
      obj: certificate,
      status: 'Healthy',
      message: 'Certificate is up to date and has not expired',
    },
    { name: 'Ready=False', obj: ready('False'), status: 'Degraded', message: 'Ready=False' },
    { name: 'Ready=Unknown', obj: ready('Unknown'), status: 'Progressing', message: 'Ready=Unknown' },
    {
      name: 'a stale Ready=True (condition observedGeneration behind) is Progressing',
      obj: ready('True', { observedGeneration: 1 }),
      status: 'Progressing',
    },
    {
      name: 'a stale status.observedGeneration is Progressing',
      obj: merge(ready('True'), { status: { observedGeneration: 1 } }),
      status: 'Progressing',
    },
    {
      name: 'a Healthy condition is used when there is no Ready',
      obj: merge(certificate, {
        status: { conditions: [{ type: 'Healthy', status: 'False', message: 'backend down' }] },
      }),
      status: 'Degraded',
      message: 'backend down',
    },
  ]);

  test('no Ready/Healthy condition means no health', () => {
    expect(
      assessHealth(merge(certificate, { status: { conditions: [{ type: 'Issuing', status: 'True' }] } })),
    ).toBeUndefined();
    expect(assessHealth(merge(certificate, { status: undefined }))).toBeUndefined();
  });
});

describe('kinds without health', () => {
  test.each([
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cfg', namespace: 'shop' }, data: { a: '1' } },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 's', namespace: 'shop' }, type: 'Opaque' },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'r', namespace: 'shop' },
      rules: [],
    },
    {
      apiVersion: 'batch/v1',
      kind: 'CronJob',
      metadata: { name: 'c', namespace: 'shop' },
      spec: { schedule: '@daily' },
    },
  ] as KubeResource[])('$kind', (obj) => {
    expect(assessHealth(obj)).toBeUndefined();
  });

  test('but an object being deleted is Progressing whatever its kind', () => {
    const cm: KubeResource = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'cfg', deletionTimestamp: '2026-03-01T11:00:00Z', finalizers: ['example.com/keep'] },
    };
    expect(assessHealth(cm)).toEqual({ status: 'Progressing', message: 'Pending deletion' });
  });
});

describe('worstHealth and ordering', () => {
  test('Argo order, most healthy first', () => {
    expect(HEALTH_ORDER).toEqual(['Healthy', 'Suspended', 'Progressing', 'Missing', 'Degraded', 'Unknown']);
  });

  test.each([
    ['Healthy', 'Suspended', true],
    ['Suspended', 'Progressing', true],
    ['Progressing', 'Missing', true],
    ['Missing', 'Degraded', true],
    ['Degraded', 'Unknown', true],
    ['Degraded', 'Progressing', false],
    ['Progressing', 'Progressing', false],
  ] as [HealthStatusCode, HealthStatusCode, boolean][])('isWorse(%s, %s) = %s', (a, b, expected) => {
    expect(isWorse(a, b)).toBe(expected);
  });

  test('the worst status wins, with its message', () => {
    const list: (HealthStatus | undefined)[] = [
      { status: 'Healthy' },
      undefined,
      { status: 'Progressing', message: 'rolling' },
      { status: 'Degraded', message: 'crash' },
      { status: 'Suspended' },
    ];
    expect(worstHealth(list)).toEqual({ status: 'Degraded', message: 'crash' });
  });

  test('ties keep the first', () => {
    expect(
      worstHealth([
        { status: 'Progressing', message: 'a' },
        { status: 'Progressing', message: 'b' },
      ]),
    ).toEqual({
      status: 'Progressing',
      message: 'a',
    });
  });

  test('empty or all-undefined is Healthy', () => {
    expect(worstHealth([])).toEqual({ status: 'Healthy' });
    expect(worstHealth([undefined, undefined])).toEqual({ status: 'Healthy' });
  });

  test('Unknown beats Degraded; Missing beats Progressing', () => {
    expect(worstHealth([{ status: 'Unknown' }, { status: 'Degraded' }]).status).toBe('Unknown');
    expect(worstHealth([{ status: 'Progressing' }, { status: 'Missing' }]).status).toBe('Missing');
  });

  test('works on assessed objects', () => {
    const results = [deployment, merge(pod, { status: waiting('CrashLoopBackOff', 'boom') }), service].map(
      (o) => assessHealth(o, { now: NOW }),
    );
    expect(worstHealth(results)).toEqual({ status: 'Degraded', message: 'boom' });
  });
});
