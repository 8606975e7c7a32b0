// The deletion hooks' decisions: which finalizers, which name, and what to do next.
import { describe, expect, test } from '@jest/globals';
import {
  decideDeletionHooks,
  deletionFinalizers,
  deletionHookName,
  deletionHooksToDelete,
  type DeletionHookState,
} from '../../../../src/controller/sync/deletion.ts';
import type { KubeResource } from '../../../../src/core/kube/resource.ts';

const job = (name: string, annotations: Record<string, string>, generateName = false): KubeResource => ({
  apiVersion: 'batch/v1',
  kind: 'Job',
  metadata: { ...(generateName ? { generateName: name } : { name }), annotations },
});
const state = (
  obj: KubeResource,
  live: boolean,
  result?: { ok: boolean; message: string },
): DeletionHookState => ({
  name: obj.metadata.name ?? 'generated',
  object: obj,
  live: live ? obj : undefined,
  result,
});

describe('deletion hooks', () => {
  test("finalizers follow the hook types, Argo CD's and Helm's annotations alike", () => {
    expect(deletionFinalizers([job('a', { 'argocd.argoproj.io/hook': 'PreSync' })])).toEqual([]);
    expect(deletionFinalizers([job('a', { 'argocd.argoproj.io/hook': 'PreDelete' })])).toEqual([
      'pre-delete-finalizer.argocd.argoproj.io',
    ]);
    expect(deletionFinalizers([job('a', { 'helm.sh/hook': 'post-delete' })])).toEqual([
      'post-delete-finalizer.argocd.argoproj.io',
      'post-delete-finalizer.argocd.argoproj.io/cleanup',
    ]);
  });

  test('a generateName hook is named from the deletion time: the same at every pass', () => {
    const hook = job('backup-', { 'argocd.argoproj.io/hook': 'PreDelete' }, true);
    const at = '2026-12-02T10:00:00Z';
    expect(deletionHookName(hook, 'PreDelete', at)).toBe(`backup-predelete-${Date.parse(at) / 1000}`);
    expect(deletionHookName(hook, 'PreDelete', at)).toBe(deletionHookName(hook, 'PreDelete', at));
    expect(deletionHookName(job('named', {}), 'PostDelete', at)).toBe('named');
  });

  test('create what is missing, wait while one runs; a failed PreDelete hook blocks, a failed PostDelete one does not', () => {
    const a = job('a', { 'argocd.argoproj.io/hook': 'PreDelete' });
    const b = job('b', { 'argocd.argoproj.io/hook': 'PreDelete' });
    expect(decideDeletionHooks('PreDelete', [state(a, true), state(b, false)])).toEqual({
      action: 'create',
      hooks: [state(b, false)],
    });
    expect(
      decideDeletionHooks('PreDelete', [state(a, true), state(b, true, { ok: true, message: '' })]),
    ).toEqual({
      action: 'wait',
      message: 'waiting for PreDelete hook Job/a to finish',
    });
    const failed = [state(a, true, { ok: false, message: 'BackoffLimitExceeded' }), state(b, true)];
    expect(decideDeletionHooks('PreDelete', failed)).toMatchObject({
      action: 'blocked',
      message: expect.stringMatching(/^PreDelete hook Job\/a failed \(BackoffLimitExceeded\)/),
    });
    expect(decideDeletionHooks('PostDelete', failed)).toMatchObject({ action: 'wait' });
    expect(
      decideDeletionHooks('PostDelete', [
        state(a, true, { ok: false, message: 'x' }),
        state(b, true, { ok: true, message: '' }),
      ]),
    ).toEqual({ action: 'done', failed: true });
    expect(decideDeletionHooks('PostDelete', [])).toEqual({ action: 'done', failed: false });
  });

  test('cleanup follows each hook’s delete policy and the outcome of all', () => {
    const onSuccess = job('s', { 'argocd.argoproj.io/hook-delete-policy': 'HookSucceeded' });
    const onFailure = job('f', { 'argocd.argoproj.io/hook-delete-policy': 'HookFailed' });
    const kept = job('k', {});
    const ok = { ok: true, message: '' };
    const all = [state(onSuccess, true, ok), state(onFailure, true, ok), state(kept, true, ok)];
    expect(deletionHooksToDelete(all).map((h) => h.name)).toEqual(['s']);
    const oneFailed = [...all.slice(0, 2), state(kept, true, { ok: false, message: '' })];
    expect(deletionHooksToDelete(oneFailed).map((h) => h.name)).toEqual(['f']);
    expect(deletionHooksToDelete([state(onSuccess, false, ok)])).toEqual([]);
  });
});
