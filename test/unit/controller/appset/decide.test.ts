// What an ApplicationSet's reconcile decides: the rendered Applications, the plan under each
// applicationsSync policy, and the status, from gathered state alone.
import { describe, expect, test } from '@jest/globals';
import {
  applicationSetStatus,
  DEFAULT_APPLICATION_FINALIZER,
  effectiveTemplate,
  planApplications,
  renderApplications,
  unsupportedFields,
} from '../../../../src/controller/appset/decide.ts';
import type { ApplicationSet } from '../../../../src/controller/appset/types.ts';
import type { Application } from '../../../../src/controller/sync/types.ts';

const appset = (spec: Partial<ApplicationSet['spec']> = {}): ApplicationSet => ({
  metadata: { name: 'fleet', namespace: 'argocd', uid: 'set-uid' },
  spec: {
    generators: [{ list: { elements: [{ name: 'a' }, { name: 'b' }] } }],
    template: {
      metadata: { name: '{{name}}', labels: { team: '{{name}}' } },
      spec: {
        source: { repoURL: 'https://git.example/{{name}}.git', path: 'deploy' },
        destination: { namespace: '{{name}}' },
      },
    },
    ...spec,
  },
});

const render = (set: ApplicationSet, elements: Record<string, unknown>[]) =>
  renderApplications(set, [{ generator: { list: { elements } }, params: elements }]);

describe('renderApplications', () => {
  test('every string of the template is rendered; owner and the default finalizer are set', () => {
    const { applications, errors } = render(appset(), [{ name: 'a' }]);
    expect(errors).toEqual([]);
    expect(applications[0]).toEqual({
      apiVersion: 'kube-actions.dev/v1alpha1',
      kind: 'Application',
      metadata: {
        name: 'a',
        namespace: 'argocd',
        labels: { team: 'a' },
        finalizers: [DEFAULT_APPLICATION_FINALIZER],
        ownerReferences: [
          {
            apiVersion: 'kube-actions.dev/v1alpha1',
            kind: 'ApplicationSet',
            name: 'fleet',
            uid: 'set-uid',
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
      spec: {
        source: { repoURL: 'https://git.example/a.git', path: 'deploy' },
        destination: { namespace: 'a' },
      },
    });
  });

  test('preserveResourcesOnDeletion drops the default finalizer; a templated one is kept as is', () => {
    const preserved = render(appset({ syncPolicy: { preserveResourcesOnDeletion: true } }), [{ name: 'a' }]);
    expect(preserved.applications[0]!.metadata.finalizers).toBeUndefined();
    const set = appset();
    set.spec.template!.metadata!.finalizers = ['example.com/mine'];
    expect(render(set, [{ name: 'a' }]).applications[0]!.metadata.finalizers).toEqual(['example.com/mine']);
  });

  test('duplicates keep the first; bad names and other namespaces are errors, not Applications', () => {
    const { applications, errors } = render(appset(), [{ name: 'a' }, { name: 'a' }, { name: 'Bad_Name' }]);
    expect(applications.map((a) => a.metadata.name)).toEqual(['a']);
    expect(errors).toEqual([
      'ApplicationSet fleet contains applications with duplicate name: a',
      'application name "Bad_Name" is not a valid resource name',
    ]);
    const set = appset();
    set.spec.template!.metadata!.namespace = 'kube-system';
    expect(render(set, [{ name: 'a' }]).errors).toEqual([
      "application a: namespace kube-system is not the ApplicationSet's (argocd)",
    ]);
  });

  test("goTemplate errors are reported per parameter set; the generator's template wins over the set's", () => {
    const set = appset({
      goTemplate: true,
      goTemplateOptions: ['missingkey=error'],
      template: {
        metadata: { name: '{{.name}}' },
        spec: { destination: { namespace: '{{ .name | upper | lower }}' } },
      },
    });
    const { applications, errors } = render(set, [{ name: 'a' }, { other: 'x' }]);
    expect(applications.map((a) => a.metadata.name)).toEqual(['a']);
    expect(errors[0]).toMatch(/map has no entry for key "name"/);
    const generator = { list: { elements: [], template: { spec: { destination: { namespace: 'fixed' } } } } };
    expect(effectiveTemplate(appset(), generator).spec).toEqual({
      source: { repoURL: 'https://git.example/{{name}}.git', path: 'deploy' },
      destination: { namespace: 'fixed' },
    });
  });

  test('fields that change what is generated are refused by name', () => {
    expect(
      unsupportedFields(
        appset({ strategy: { type: 'RollingSync' }, generators: [{ list: {}, selector: {} }] }),
      ),
    ).toEqual(['spec.strategy', 'spec.generators[0].selector']);
  });
});

describe('planApplications', () => {
  const set = appset();
  const desired = render(set, [{ name: 'a' }, { name: 'b' }]).applications;
  const live = (
    name: string,
    patch: Partial<Application['metadata']> = {},
    spec?: Application['spec'],
  ): Application => ({
    ...structuredClone(desired.find((a) => a.metadata.name === name) ?? desired[0]!),
    metadata: {
      ...structuredClone((desired.find((a) => a.metadata.name === name) ?? desired[0]!).metadata),
      name,
      uid: `${name}-uid`,
      resourceVersion: '7',
      ...patch,
    },
    ...(spec ? { spec } : {}),
  });

  test('creates what is missing, leaves what is the same, updates an edited one back', () => {
    const edited = live('b', {}, { destination: { namespace: 'hand-edited' } });
    const plan = planApplications(set, desired, [edited]);
    expect(plan.create.map((a) => a.metadata.name)).toEqual(['a']);
    expect(plan.update).toHaveLength(1);
    expect(plan.update[0]!.spec.destination.namespace).toBe('b');
    expect(plan.update[0]!.metadata.resourceVersion).toBe('7'); // an update of what was read, or a conflict
    expect(planApplications(set, desired, [live('a'), live('b')])).toEqual({
      create: [],
      update: [],
      delete: [],
      errors: [],
    });
  });

  test("keeps Argo CD's preserved annotations and deletion-hook finalizers across an update", () => {
    const have = live('a', {
      annotations: { 'argocd.argoproj.io/refresh': 'hard', stale: 'x' },
      finalizers: [DEFAULT_APPLICATION_FINALIZER, 'pre-delete-finalizer.argocd.argoproj.io'],
    });
    const [update] = planApplications(set, desired, [have, live('b')]).update;
    expect(update!.metadata.annotations).toEqual({ 'argocd.argoproj.io/refresh': 'hard' });
    expect(update!.metadata.finalizers).toEqual([
      DEFAULT_APPLICATION_FINALIZER,
      'pre-delete-finalizer.argocd.argoproj.io',
    ]);
  });

  test('deletes only its own Applications that are no longer generated, and only where the policy allows', () => {
    const gone = live('c');
    const foreign = live('d', { ownerReferences: [] });
    const plan = planApplications(set, desired, [live('a'), live('b'), gone, foreign]);
    expect(plan.delete.map((a) => a.metadata.name)).toEqual(['c']);
    for (const policy of ['create-only', 'create-update'] as const)
      expect(
        planApplications(appset({ syncPolicy: { applicationsSync: policy } }), desired, [gone]).delete,
      ).toEqual([]);
    expect(
      planApplications(appset({ syncPolicy: { applicationsSync: 'create-delete' } }), desired, [gone]).delete,
    ).toHaveLength(1);
  });

  test('create-only and create-delete never update; create-update does', () => {
    const edited = live('a', {}, { destination: { namespace: 'x' } });
    for (const policy of ['create-only', 'create-delete'] as const)
      expect(
        planApplications(appset({ syncPolicy: { applicationsSync: policy } }), desired, [edited]).update,
      ).toEqual([]);
    expect(
      planApplications(appset({ syncPolicy: { applicationsSync: 'create-update' } }), desired, [edited])
        .update,
    ).toHaveLength(1);
  });

  test("another controller's Application is an error and never touched; an error round deletes nothing", () => {
    const other = live('a', {
      ownerReferences: [
        {
          apiVersion: 'kube-actions.dev/v1alpha1',
          kind: 'ApplicationSet',
          name: 'x',
          uid: 'x',
          controller: true,
        },
      ],
    });
    const plan = planApplications(set, desired, [other, live('c')]);
    expect(plan.errors).toEqual(['application a already exists and is controlled by ApplicationSet x']);
    expect(plan.update).toEqual([]);
    expect(plan.delete).toEqual([]);
    expect(planApplications(set, desired, [live('c')], ['a render error']).delete).toEqual([]);
  });

  test('an unowned Application of the same name is adopted', () => {
    const [adopted] = planApplications(set, desired, [
      live('a', { ownerReferences: undefined }),
      live('b'),
    ]).update;
    expect(adopted!.metadata.ownerReferences).toEqual(desired[0]!.metadata.ownerReferences);
  });
});

describe('applicationSetStatus', () => {
  const now = new Date('2026-12-02T10:00:00Z');
  const desired = render(appset(), [{ name: 'a' }]).applications;
  test("Argo CD's three conditions; transition times kept while a status stays", () => {
    const ok = applicationSetStatus(undefined, { errors: [], writeErrors: [], desired, live: [] }, now);
    expect(ok.conditions!.map((c) => [c.type, c.status, c.reason])).toEqual([
      ['ErrorOccurred', 'False', 'ApplicationSetUpToDate'],
      ['ParametersGenerated', 'True', 'ParametersGenerated'],
      ['ResourcesUpToDate', 'True', 'ApplicationSetUpToDate'],
    ]);
    expect(ok.resources).toEqual([
      { group: 'kube-actions.dev', version: 'v1alpha1', kind: 'Application', name: 'a', namespace: 'argocd' },
    ]);
    const later = applicationSetStatus(
      ok,
      { errors: ['x'], writeErrors: [], desired, live: [] },
      new Date('2026-12-02T11:00:00Z'),
    );
    expect(later.conditions!.map((c) => [c.type, c.status, c.lastTransitionTime])).toEqual([
      ['ErrorOccurred', 'True', '2026-12-02T11:00:00.000Z'],
      ['ParametersGenerated', 'True', '2026-12-02T10:00:00.000Z'],
      ['ResourcesUpToDate', 'False', '2026-12-02T11:00:00.000Z'],
    ]);
    const failed = applicationSetStatus(
      later,
      { generatorError: 'git said no', errors: [], writeErrors: [], desired: [], live: [] },
      now,
    );
    expect(failed.conditions![1]).toMatchObject({
      type: 'ParametersGenerated',
      status: 'False',
      message: 'git said no',
    });
  });
});
