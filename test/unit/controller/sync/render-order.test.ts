// Render and sync share one kind order: a rendered stream (src/core/render/output.ts) lists objects
// in the order the sync plan (src/core/kube/sync-plan.ts) applies them within a wave, so what a
// reviewer reads top to bottom in rendered manifests is what the controller does.
import { describe, expect, test } from '@jest/globals';
import { planSync } from '../../../../src/core/kube/sync-plan.ts';
import { parseManifests } from '../../../../src/core/render/manifest.ts';
import { sortObjects } from '../../../../src/core/render/output.ts';

// One object of each kind, in no particular order; one custom resource (kinds no list names go
// last in both, ordered among themselves by different tie-breaks).
const MANIFESTS = [
  'apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}',
  'apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}',
  'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}',
  'apiVersion: batch/v1\nkind: Job\nmetadata: {name: once}',
  'apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: web}',
  'apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}',
  'apiVersion: v1\nkind: Service\nmetadata: {name: web}',
  'apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: web}',
  'apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: web}',
  'apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: web}',
  'apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}\nspec: {group: example.com, names: {kind: Widget}}',
  'apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}',
  'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}',
  'apiVersion: v1\nkind: Secret\nmetadata: {name: token}',
  'apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: web}',
  'apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web}',
  'apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}',
].join('\n---\n');

describe('one kind order for render and sync', () => {
  test('a rendered stream lists objects in the order a sync wave applies them', () => {
    const objects = parseManifests(MANIFESTS, 'all.yaml').map((m) => m.object);
    const rendered = sortObjects(objects).map((o) => o.kind);
    const plan = planSync({ desired: objects, options: { namespace: 'shop' } });
    expect(plan.phases.map((p) => `${p.phase}:${p.waves.map((w) => w.wave).join()}`)).toEqual(['Sync:0']);
    const synced = plan.phases[0]!.waves[0]!.tasks.map((t) => t.kind);
    expect(rendered).toEqual(synced);
    // The order itself (gitops-engine's): Namespace first, a CRD after the PVCs and before RBAC,
    // the custom resource last.
    expect(rendered).toEqual([
      'Namespace',
      'PodDisruptionBudget',
      'ServiceAccount',
      'Secret',
      'ConfigMap',
      'PersistentVolumeClaim',
      'CustomResourceDefinition',
      'ClusterRole',
      'Role',
      'RoleBinding',
      'Service',
      'Deployment',
      'HorizontalPodAutoscaler',
      'StatefulSet',
      'Job',
      'Ingress',
      'Widget',
    ]);
  });
});
