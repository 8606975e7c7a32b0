// What each `kube-actions rollout` verb writes, as pure functions of the live objects: the status
// subresource gets JSON merge patches (promote, abort, retry: the fields the controller reads), the
// spec gets merge patches (pause, promote) or guarded JSON patches (set image, undo).
import {
  POD_TEMPLATE_HASH,
  REVISION,
  SOURCE_TEMPLATE,
  type PodTemplate,
  type ReplicaSet,
  type Rollout,
} from '../../controller/rollout/types.ts';
import { ownedReplicaSets } from './render.ts';

/** A request the rollout's state does not allow (exit 1), with the reason for the user. */
export class Refused extends Error {}

export interface JsonPatchOp {
  op: 'replace' | 'test' | 'add';
  path: string;
  value?: unknown;
}

/** Merge patches for the main resource (spec) and the status subresource; either may be absent. */
export interface Patches {
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
  /** What to tell the user. */
  message: string;
}

const isPaused = (ro: Rollout) => Boolean(ro.spec.paused) || (ro.status?.pauseConditions?.length ?? 0) > 0;
const name = (ro: Rollout) => ro.metadata.name;

/**
 * promote: ends the pause (the pause conditions, which the controller reads as "promoted", and
 * spec.paused); --full also skips every remaining step, analysis and pause.
 */
export function promotePatches(ro: Rollout, full: boolean): Patches {
  const s = ro.status ?? {};
  if (s.abort)
    throw new Refused(
      `rollout "${name(ro)}" is aborted: use 'kube-actions rollout retry ${name(ro)}' to run its steps again`,
    );
  const paused = isPaused(ro);
  const updating = Boolean(s.currentPodHash) && s.currentPodHash !== s.stableRS;
  if (!paused && !full)
    throw new Refused(
      `rollout "${name(ro)}" is not paused${updating ? ' (use --full to skip the remaining steps)' : ''}`,
    );
  const patches: Patches = { message: `rollout "${name(ro)}" promoted` };
  if (ro.spec.paused) patches.spec = { spec: { paused: false } };
  const status: Record<string, unknown> = {};
  if (s.pauseConditions?.length) status.pauseConditions = null;
  if (full && updating) {
    status.promoteFull = true;
    patches.message = `rollout "${name(ro)}" fully promoted`;
  } else if (full && !paused) {
    return { message: `rollout "${name(ro)}" is already fully promoted` };
  }
  if (Object.keys(status).length) patches.status = { status };
  return patches;
}

/** abort: back to the stable revision; the rollout is Degraded until retried or updated. */
export function abortPatches(ro: Rollout, rss: ReplicaSet[], now: Date): Patches {
  const s = ro.status ?? {};
  if (!s.currentPodHash || s.currentPodHash === s.stableRS)
    throw new Refused(`rollout "${name(ro)}" has no update in progress to abort`);
  if (s.abort) return { message: `rollout "${name(ro)}" is already aborted` };
  const current = ownedReplicaSets(ro, rss).find(
    (rs) => rs.metadata.labels?.[POD_TEMPLATE_HASH] === s.currentPodHash,
  );
  const revision = current?.metadata.annotations?.[REVISION] ?? s.currentPodHash;
  return {
    status: {
      status: {
        abort: true,
        abortedAt: now.toISOString(),
        message: `RolloutAborted: Rollout aborted update to revision ${revision}`,
        // The controller's own pause bookkeeping goes too: a retry starts every pause afresh.
        pauseConditions: null,
        controllerPause: null,
        currentStepHash: null,
      },
    },
    message: `rollout "${name(ro)}" aborted`,
  };
}

/** retry: an aborted rollout runs its steps again from the first. */
export function retryPatches(ro: Rollout): Patches {
  if (!ro.status?.abort) throw new Refused(`rollout "${name(ro)}" is not aborted: nothing to retry`);
  return {
    status: {
      status: {
        abort: null,
        abortedAt: null,
        message: null,
        currentStepIndex: 0,
        pauseConditions: null,
        controllerPause: null,
        currentStepHash: null,
        ...(ro.spec.strategy?.blueGreen ? { blueGreen: { scaleUpPreviewCheckPoint: null } } : {}),
      },
    },
    message: `rollout "${name(ro)}" restarted`,
  };
}

export function pausePatches(ro: Rollout): Patches {
  if (ro.spec.paused) return { message: `rollout "${name(ro)}" is already paused` };
  return { spec: { spec: { paused: true } }, message: `rollout "${name(ro)}" paused` };
}

/** `CONTAINER=IMAGE` arguments; `*=IMAGE` sets every container. */
export function parseImageAssignments(args: string[]): { container: string; image: string }[] {
  if (args.length === 0) throw new UsageError('set image needs CONTAINER=IMAGE');
  return args.map((a) => {
    const eq = a.indexOf('=');
    if (eq <= 0 || eq === a.length - 1) throw new UsageError(`"${a}" is not CONTAINER=IMAGE`);
    return { container: a.slice(0, eq), image: a.slice(eq + 1) };
  });
}

/** A usage error (exit 2). */
export class UsageError extends Error {}

/**
 * `set image`: a JSON patch that replaces the images of the named containers (and init
 * containers), each guarded by a test of the container's name at that index, so a template that
 * changed meanwhile fails the patch instead of getting an image in the wrong container.
 */
export function setImagePatch(
  ro: Rollout,
  assignments: { container: string; image: string }[],
): JsonPatchOp[] {
  const spec = ro.spec.template?.spec ?? {};
  const lists = {
    containers: spec.containers ?? [],
    initContainers: (spec.initContainers as { name: string; image?: string }[] | undefined) ?? [],
  };
  const ops: JsonPatchOp[] = [];
  for (const { container, image } of assignments) {
    let matched = false;
    for (const [field, list] of Object.entries(lists)) {
      list.forEach((c, i) => {
        if (container !== '*' && c.name !== container) return;
        matched = true;
        const base = `/spec/template/spec/${field}/${i}`;
        ops.push({ op: 'test', path: `${base}/name`, value: c.name });
        ops.push({ op: c.image === undefined ? 'add' : 'replace', path: `${base}/image`, value: image });
      });
    }
    if (!matched) {
      const known = [...lists.containers, ...lists.initContainers].map((c) => c.name);
      throw new Refused(
        `rollout "${name(ro)}" has no container "${container}" (containers: ${known.join(', ') || 'none'})`,
      );
    }
  }
  return ops;
}

/**
 * `undo`: the pod template of revision `toRevision` (default: the newest revision other than the
 * current one), without the controller's hash label, to replace spec.template with.
 */
export function undoTemplate(
  ro: Rollout,
  rss: ReplicaSet[],
  toRevision?: number,
): { revision: number; template: PodTemplate; isCurrent: boolean } {
  const owned = ownedReplicaSets(ro, rss);
  const revision = (rs: ReplicaSet) => Number(rs.metadata.annotations?.[REVISION] ?? 0);
  const current = ro.status?.currentPodHash;
  const target = toRevision
    ? owned.find((rs) => revision(rs) === toRevision)
    : owned.find((rs) => rs.metadata.labels?.[POD_TEMPLATE_HASH] !== current);
  if (!target) {
    const have = owned.map(revision).sort((a, b) => a - b);
    throw new Refused(
      toRevision
        ? `rollout "${name(ro)}" has no revision ${toRevision} (revisions: ${have.join(', ') || 'none'})`
        : `rollout "${name(ro)}" has no previous revision to go back to`,
    );
  }
  // The template as the Rollout had it, when the controller recorded it: the ReplicaSet's own copy
  // carries the server's defaults and would hash as a new revision.
  const recorded = target.metadata.annotations?.[SOURCE_TEMPLATE];
  const template = recorded ? (JSON.parse(recorded) as PodTemplate) : structuredClone(target.spec.template);
  if (template.metadata?.labels) {
    delete template.metadata.labels[POD_TEMPLATE_HASH];
  }
  return {
    revision: revision(target),
    template,
    isCurrent: target.metadata.labels?.[POD_TEMPLATE_HASH] === current,
  };
}
