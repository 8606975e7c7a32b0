// Human output of `kube-actions rollout get` and `list`, after `kubectl argo rollouts get rollout`:
// a summary (status, strategy, step, weights, images, replicas), the canary steps with a progress
// bar, and a tree of revisions → ReplicaSets → pods. Pure functions of the objects and a clock.
import { weightAt } from '../../controller/rollout/replicas.ts';
import {
  POD_TEMPLATE_HASH,
  REVISION,
  SCALE_DOWN_DEADLINE,
  type CanaryStep,
  type ReplicaSet,
  type Rollout,
} from '../../controller/rollout/types.ts';
import { age, columns } from '../format.ts';
import { compareStrings } from '../../core/order.ts';

export interface Pod {
  metadata: {
    name: string;
    namespace?: string;
    creationTimestamp?: string;
    deletionTimestamp?: string;
    labels?: Record<string, string>;
    ownerReferences?: { kind: string; name: string; uid?: string }[];
  };
  spec?: { containers?: unknown[] };
  status?: {
    phase?: string;
    reason?: string;
    containerStatuses?: {
      ready?: boolean;
      restartCount?: number;
      state?: { waiting?: { reason?: string }; terminated?: { reason?: string } };
    }[];
  };
}

export type Phase = 'Healthy' | 'Progressing' | 'Paused' | 'Degraded';

const ICONS: Record<string, string> = {
  Healthy: '✔',
  Progressing: '◌',
  Paused: '॥',
  Degraded: '✖',
  ScaledDown: '•',
};

function created(o: { metadata?: object }): string | undefined {
  return (o.metadata as { creationTimestamp?: string } | undefined)?.creationTimestamp;
}

/**
 * The rollout's phase as a user should read it now: the controller's status, except where the
 * user has just asked for something the controller has not acted on yet (a spec change not
 * observed, a promote or retry not picked up), which is Progressing, and an abort, which is
 * Degraded as soon as it is requested (as Argo Rollouts reports it).
 */
export function rolloutPhase(ro: Rollout): { phase: Phase; message: string } {
  const s = ro.status ?? {};
  if (!s.phase || s.observedGeneration !== String(ro.metadata.generation ?? '')) {
    return { phase: 'Progressing', message: 'waiting for rollout spec update to be observed' };
  }
  // A spec the controller cannot follow stays so until it is changed: nothing to wait for.
  const invalid = s.conditions?.find((c) => c.type === 'InvalidSpec' && c.status === 'True');
  if (invalid) return { phase: 'Degraded', message: `InvalidSpec: ${invalid.message}` };
  if (s.abort) {
    const message = s.message?.startsWith('RolloutAborted') ? s.message : 'RolloutAborted';
    return { phase: 'Degraded', message };
  }
  if (s.phase === 'Degraded' && s.message?.startsWith('RolloutAborted')) {
    return { phase: 'Progressing', message: 'waiting for the retry to be observed' };
  }
  if (s.phase === 'Paused' && !ro.spec.paused && !s.pauseConditions?.length) {
    return { phase: 'Progressing', message: 'waiting for the rollout to resume' };
  }
  return { phase: s.phase, message: s.message ?? '' };
}

export function strategyName(ro: Rollout): string {
  if (ro.spec.strategy?.blueGreen) return 'BlueGreen';
  if (ro.spec.strategy?.canary) return 'Canary';
  return 'Unknown';
}

const hashOf = (rs: ReplicaSet) => rs.metadata.labels?.[POD_TEMPLATE_HASH] ?? '';
const revisionOf = (rs: ReplicaSet) => Number(rs.metadata.annotations?.[REVISION] ?? 0);

/** The ReplicaSets a rollout owns, newest revision first. */
export function ownedReplicaSets(ro: Rollout, rss: ReplicaSet[]): ReplicaSet[] {
  return rss
    .filter((rs) =>
      rs.metadata.ownerReferences?.some(
        (o) => o.kind === 'Rollout' && (o.uid ? o.uid === ro.metadata.uid : o.name === ro.metadata.name),
      ),
    )
    .sort((a, b) => revisionOf(b) - revisionOf(a) || compareStrings(a.metadata.name, b.metadata.name));
}

/** stable / canary / active / preview, as the rollout's status names the ReplicaSet's hash. */
export function replicaSetMarkers(ro: Rollout, rs: ReplicaSet): string[] {
  const s = ro.status ?? {};
  const hash = hashOf(rs);
  const markers: string[] = [];
  if (!hash) return markers;
  if (hash === s.stableRS) markers.push('stable');
  if (ro.spec.strategy?.blueGreen) {
    const bg = s.blueGreen ?? {};
    if (bg.activeSelector === hash) markers.push('active');
    if (bg.previewSelector === hash && bg.previewSelector !== bg.activeSelector) markers.push('preview');
  } else if (hash === s.currentPodHash && hash !== s.stableRS) {
    markers.push('canary');
  }
  return markers;
}

export interface CanaryProgress {
  steps: CanaryStep[];
  /** The step the rollout is at (steps.length when done). */
  index: number;
  setWeight: number;
  actualWeight: number;
  complete: boolean;
}

export function canaryProgress(ro: Rollout): CanaryProgress | undefined {
  const canary = ro.spec.strategy?.canary;
  if (!canary) return undefined;
  const s = ro.status ?? {};
  const steps = canary.steps ?? [];
  const complete = Boolean(s.stableRS) && s.stableRS === s.currentPodHash;
  const index = complete ? steps.length : Math.min(s.currentStepIndex ?? 0, steps.length);
  const setWeight = complete || index >= steps.length ? 100 : s.abort ? 0 : weightAt(steps, index);
  const actualWeight = complete ? 100 : (s.canary?.weights?.canary.weight ?? 0);
  return { steps, index, setWeight, actualWeight, complete };
}

export function describeStep(step: CanaryStep): string {
  if (step.setWeight !== undefined) return `setWeight: ${step.setWeight}`;
  if (step.pause)
    return step.pause.duration === undefined
      ? 'pause (until promoted)'
      : `pause: ${typeof step.pause.duration === 'number' ? `${step.pause.duration}s` : step.pause.duration}`;
  if (step.setCanaryScale) {
    const c = step.setCanaryScale;
    if (c.replicas !== undefined) return `setCanaryScale: replicas ${c.replicas}`;
    if (c.weight !== undefined) return `setCanaryScale: weight ${c.weight}`;
    return 'setCanaryScale: matchTrafficWeight';
  }
  if (step.analysis)
    return `analysis: ${(step.analysis.templates ?? []).map((t) => t.templateName).join(', ')}`;
  return Object.keys(step)[0] ?? 'step';
}

function progressBar(done: number, total: number, width = 20): string {
  const filled = total === 0 ? width : Math.round((done / total) * width);
  return `[${'█'.repeat(filled)}${'░'.repeat(width - filled)}]`;
}

function field(label: string, value: string | number): string {
  return `${label.padEnd(17)}${value}`;
}

/** The summary above the tree. */
export function summary(ro: Rollout, rss: ReplicaSet[]): string[] {
  const s = ro.status ?? {};
  const { phase, message } = rolloutPhase(ro);
  const lines = [
    field('Name:', ro.metadata.name),
    field('Namespace:', ro.metadata.namespace),
    field('Status:', `${ICONS[phase] ?? '?'} ${phase}`),
  ];
  if (message) lines.push(field('Message:', message));
  lines.push(field('Strategy:', strategyName(ro)));
  const progress = canaryProgress(ro);
  if (progress) {
    const { steps, index, complete } = progress;
    lines.push(field('  Step:', `${index}/${steps.length}`));
    if (steps.length) {
      lines.push(field('  Progress:', `${progressBar(index, steps.length)} ${index}/${steps.length}`));
      steps.forEach((step, i) => {
        let mark = '○';
        if (complete || i < index) mark = '✔';
        else if (i === index) mark = s.abort ? '✖' : phase === 'Paused' ? '॥' : '◌';
        lines.push(`${(i === 0 ? '  Steps:' : '').padEnd(17)}${mark} ${i}  ${describeStep(step)}`);
      });
    }
    lines.push(field('  SetWeight:', progress.setWeight));
    lines.push(field('  ActualWeight:', progress.actualWeight));
  }
  const owned = ownedReplicaSets(ro, rss);
  const images = new Map<string, string[]>();
  // Stable first, then newest to oldest.
  const ordered = [
    ...owned.filter((rs) => hashOf(rs) === s.stableRS),
    ...owned.filter((rs) => hashOf(rs) !== s.stableRS),
  ];
  for (const rs of ordered) {
    const markers = replicaSetMarkers(ro, rs);
    if (!markers.length) continue;
    for (const c of rs.spec.template.spec?.containers ?? []) {
      if (!c.image) continue;
      const list = images.get(c.image) ?? [];
      images.set(c.image, [...list, ...markers.filter((m) => !list.includes(m))]);
    }
  }
  if (images.size === 0)
    for (const c of ro.spec.template?.spec?.containers ?? []) if (c.image) images.set(c.image, []);
  [...images].forEach(([image, markers], i) => {
    const text = markers.length ? `${image} (${markers.join(', ')})` : image;
    lines.push(i === 0 ? field('Images:', text) : `${''.padEnd(17)}${text}`);
  });
  lines.push(
    'Replicas:',
    field('  Desired:', ro.spec.replicas ?? 1),
    field('  Current:', s.replicas ?? 0),
    field('  Updated:', s.updatedReplicas ?? 0),
    field('  Ready:', s.readyReplicas ?? 0),
    field('  Available:', s.availableReplicas ?? 0),
  );
  return lines;
}

interface Node {
  name: string;
  kind: string;
  status: string;
  age: string;
  info: string;
  children: Node[];
}

function replicaSetStatus(rs: ReplicaSet): string {
  const desired = rs.spec.replicas ?? 0;
  const current = rs.status?.replicas ?? 0;
  if (desired === 0 && current === 0) return 'ScaledDown';
  if (current === desired && (rs.status?.availableReplicas ?? 0) >= desired) return 'Healthy';
  return 'Progressing';
}

function podStatus(pod: Pod): { icon: string; text: string } {
  if (pod.metadata.deletionTimestamp) return { icon: '◌', text: 'Terminating' };
  const statuses = pod.status?.containerStatuses ?? [];
  const waiting = statuses.find((c) => c.state?.waiting?.reason)?.state?.waiting?.reason;
  const terminated = statuses.find((c) => c.state?.terminated?.reason)?.state?.terminated?.reason;
  const phase = pod.status?.phase ?? 'Unknown';
  if (waiting) return { icon: /Err|BackOff|Invalid/.test(waiting) ? '✖' : '◌', text: waiting };
  if (phase === 'Failed') return { icon: '✖', text: terminated ?? pod.status?.reason ?? 'Error' };
  if (phase === 'Succeeded') return { icon: '✔', text: 'Completed' };
  if (phase === 'Running')
    return { icon: statuses.length && statuses.every((c) => c.ready) ? '✔' : '◌', text: 'Running' };
  return { icon: '◌', text: phase };
}

/** The tree of revisions, their ReplicaSets and pods, as a table. */
export function tree(ro: Rollout, rss: ReplicaSet[], pods: Pod[], now: number): string {
  const owned = ownedReplicaSets(ro, rss);
  const byRevision = new Map<number, ReplicaSet[]>();
  for (const rs of owned) byRevision.set(revisionOf(rs), [...(byRevision.get(revisionOf(rs)) ?? []), rs]);
  const { phase } = rolloutPhase(ro);
  const root: Node = {
    name: `⟳ ${ro.metadata.name}`,
    kind: 'Rollout',
    status: `${ICONS[phase]} ${phase}`,
    age: age(created(ro), now),
    info: '',
    children: [...byRevision].map(([revision, sets]) => ({
      name: `# revision:${revision}`,
      kind: '',
      status: '',
      age: '',
      info: '',
      children: sets.map((rs) => {
        const status = replicaSetStatus(rs);
        const info = [...replicaSetMarkers(ro, rs)].join(',');
        const deadline = rs.metadata.annotations?.[SCALE_DOWN_DEADLINE];
        const delay = deadline
          ? `delay:${Date.parse(deadline) > now ? `${Math.ceil((Date.parse(deadline) - now) / 1000)}s` : 'passed'}`
          : '';
        return {
          name: `⧉ ${rs.metadata.name}`,
          kind: 'ReplicaSet',
          status: `${ICONS[status]} ${status}`,
          age: age(rs.metadata.creationTimestamp, now),
          info: [
            info,
            status === 'ScaledDown'
              ? ''
              : `available:${rs.status?.availableReplicas ?? 0}/${rs.spec.replicas ?? 0}`,
            delay,
          ]
            .filter(Boolean)
            .join('  '),
          children: pods
            .filter((p) =>
              p.metadata.ownerReferences?.some((o) => o.kind === 'ReplicaSet' && o.name === rs.metadata.name),
            )
            .sort((a, b) => compareStrings(a.metadata.name, b.metadata.name))
            .map((p) => {
              const st = podStatus(p);
              const cs = p.status?.containerStatuses ?? [];
              const total = cs.length || (p.spec?.containers?.length ?? 0);
              const restarts = cs.reduce((n, c) => n + (c.restartCount ?? 0), 0);
              return {
                name: `□ ${p.metadata.name}`,
                kind: 'Pod',
                status: `${st.icon} ${st.text}`,
                age: age(p.metadata.creationTimestamp, now),
                info: [
                  `ready:${cs.filter((c) => c.ready).length}/${total}`,
                  restarts ? `restarts:${restarts}` : '',
                ]
                  .filter(Boolean)
                  .join('  '),
                children: [],
              };
            }),
        };
      }),
    })),
  };
  const rows = [['NAME', 'KIND', 'STATUS', 'AGE', 'INFO']];
  const walk = (node: Node, prefix: string, connector: string, childPrefix: string) => {
    rows.push([`${prefix}${connector}${node.name}`, node.kind, node.status, node.age, node.info]);
    node.children.forEach((child, i) => {
      const last = i === node.children.length - 1;
      walk(child, prefix + childPrefix, last ? '└──' : '├──', last ? '   ' : '│  ');
    });
  };
  walk(root, '', '', '');
  return columns(rows);
}

/** `rollout get`: summary and tree. */
export function renderRollout(ro: Rollout, rss: ReplicaSet[], pods: Pod[], now: number): string {
  return `${summary(ro, rss).join('\n')}\n\n${tree(ro, rss, pods, now)}`;
}

/** `rollout list`. */
export function listTable(ros: Rollout[], withNamespace: boolean, now: number): string {
  if (ros.length === 0) return 'No rollouts found.\n';
  const rows = [
    [
      ...(withNamespace ? ['NAMESPACE'] : []),
      'NAME',
      'STRATEGY',
      'STATUS',
      'STEP',
      'SET-WEIGHT',
      'READY',
      'AGE',
    ],
  ];
  for (const ro of ros) {
    const progress = canaryProgress(ro);
    rows.push([
      ...(withNamespace ? [ro.metadata.namespace] : []),
      ro.metadata.name,
      strategyName(ro),
      rolloutPhase(ro).phase,
      progress ? `${progress.index}/${progress.steps.length}` : '-',
      progress ? String(progress.setWeight) : '-',
      `${ro.status?.readyReplicas ?? 0}/${ro.spec.replicas ?? 1}`,
      age(created(ro), now),
    ]);
  }
  return columns(rows);
}
