// kube-actions rollout: look at and operate Rollouts, like the `kubectl argo rollouts` plugin:
// get (a tree of revisions, ReplicaSets and pods, optionally watched), status (blocks until
// Healthy, Paused or Degraded: a gate for a workflow step), promote, abort, retry, undo, pause,
// set image, list. Operations write only what the controller reads: status fields through the
// status subresource (merge patches), the pod template and spec.paused on the main resource.
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { loadKubeConfig } from '../core/kube/config.ts';
import { KubeClient, isNotFound, PatchType } from '../core/kube/client.ts';
import { resourcePath } from '../core/kube/objects.ts';
import { parseDurationMs } from '../core/duration.ts';
import { REPLICASETS, ROLLOUT, type ReplicaSet, type Rollout } from '../controller/rollout/types.ts';
import {
  abortPatches,
  parseImageAssignments,
  pausePatches,
  promotePatches,
  Refused,
  retryPatches,
  setImagePatch,
  undoTemplate,
  UsageError,
  type Patches,
} from './rollout/patches.ts';
import { listTable, renderRollout, rolloutPhase, type Pod } from './rollout/render.ts';

export const ROLLOUT_USAGE = `usage: kube-actions rollout <command> NAME [options]

commands:
  get NAME [--watch] [-o json|yaml]
                             status, steps, weights, images, and the tree of revisions,
                             ReplicaSets and pods; --watch redraws on changes until Ctrl-C
  status NAME [--timeout 5m] [--watch=false] [--image IMAGE]
                             wait until the rollout is Healthy (exit 0), paused until promoted
                             (exit 0; a timed pause is waited through) or Degraded (exit 1),
                             printing its status as it changes; with
                             --image, only once its pod template runs IMAGE (a deploy gate
                             after a GitOps promotion, which takes a moment to be synced)
  promote NAME [--full]      end the current pause; --full skips all remaining steps
  abort NAME                 go back to the stable revision (the rollout becomes Degraded)
  retry NAME                 run an aborted rollout's steps again
  undo NAME [--to-revision N]
                             roll the pod template back to revision N (default: the previous one)
  pause NAME                 pause the rollout (promote resumes it)
  set image NAME CONTAINER=IMAGE [...]
                             set container images (CONTAINER "*" sets every container)
  list [-A]                  Rollouts with strategy, status, step, weight and readiness

options:
  -n, --namespace NS         the Rollout's namespace (default: the kubeconfig's, else default)
  -A, --all-namespaces       list: every namespace
  -o, --output FORMAT        get, list: json or yaml instead of the human format
  -w, --watch                get: keep redrawing; status: wait (default; --watch=false: print once)
  --timeout DURATION         status: give up after this long (default 5m, exit 1);
                             get --watch: stop watching after this long
  --kubeconfig PATH, --context NAME

exit codes: 0 done, 1 failed (not found, refused, Degraded, timed out), 2 usage error
`;

export interface RolloutIO {
  out: (text: string) => void;
  err: (text: string) => void;
  /** Whether out is a terminal (get --watch clears the screen only then). */
  isTTY: boolean;
  /** Aborted by Ctrl-C; default: a SIGINT handler installed while watching. */
  signal?: AbortSignal;
}

const defaultIO = (): RolloutIO => ({
  out: (t) => void process.stdout.write(t),
  err: (t) => void process.stderr.write(t),
  isTTY: Boolean(process.stdout.isTTY),
});

/** `--watch=false` / `--full=true` style booleans, which parseArgs does not take. */
function normalizeBooleans(argv: string[]): string[] {
  return argv.map((a) => {
    const m = /^--(watch|full|all-namespaces)=(true|false)$/.exec(a);
    if (!m) return a;
    return m[2] === 'true' ? `--${m[1]}` : `--no-${m[1]}`;
  });
}

export async function rolloutCommand(argv: string[], io: RolloutIO = defaultIO()): Promise<number> {
  const usage = (why: string) => {
    io.err(`kube-actions rollout: ${why}\n\n${ROLLOUT_USAGE}`);
    return 2;
  };
  let parsed;
  try {
    parsed = parseArgs({
      args: normalizeBooleans(argv),
      allowPositionals: true,
      allowNegative: true,
      options: {
        namespace: { type: 'string', short: 'n' },
        'all-namespaces': { type: 'boolean', short: 'A' },
        output: { type: 'string', short: 'o' },
        watch: { type: 'boolean', short: 'w' },
        timeout: { type: 'string' },
        image: { type: 'string' },
        full: { type: 'boolean', default: false },
        'to-revision': { type: 'string' },
        kubeconfig: { type: 'string' },
        context: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    return usage((err as Error).message);
  }
  const { values } = parsed;
  const positionals = [...parsed.positionals];
  const verb = positionals.shift();
  if (values.help || !verb) {
    if (values.help) io.out(ROLLOUT_USAGE);
    else io.err(ROLLOUT_USAGE);
    return values.help ? 0 : 2;
  }
  // `get rollout NAME`, as the Argo plugin spells it.
  if (verb === 'get' && positionals[0] === 'rollout' && positionals.length === 2) positionals.shift();
  if (verb === 'set' && positionals.shift() !== 'image') return usage('set supports only "set image"');
  const name = positionals[0];
  const verbs = ['get', 'status', 'promote', 'abort', 'retry', 'undo', 'pause', 'set', 'list'];
  if (!verbs.includes(verb)) return usage(`unknown command "${verb}"`);
  if (verb !== 'list' && !name) return usage(`${verb === 'set' ? 'set image' : verb} needs a rollout name`);
  if (verb !== 'set' && verb !== 'list' && positionals.length > 1)
    return usage(`unexpected arguments: ${positionals.slice(1).join(' ')}`);
  if (verb === 'list' && positionals.length) return usage(`unexpected arguments: ${positionals.join(' ')}`);
  if (values.output && !['json', 'yaml'].includes(values.output))
    return usage('--output must be json or yaml');
  if (values.output && verb !== 'get' && verb !== 'list') return usage('--output applies to get and list');
  if (values.output && values.watch) return usage('--output and --watch do not go together');
  let timeoutMs: number | undefined;
  if (values.timeout !== undefined) {
    timeoutMs = parseDurationMs(values.timeout);
    if (timeoutMs === undefined) return usage('--timeout must be a duration such as 90s or 5m');
  }
  let toRevision: number | undefined;
  if (values['to-revision'] !== undefined) {
    toRevision = Number(values['to-revision']);
    if (!Number.isInteger(toRevision) || toRevision < 0)
      return usage('--to-revision must be a revision number (see `kube-actions rollout get`)');
  }
  if (values.full && verb !== 'promote') return usage('--full applies to promote');
  if (values.image !== undefined && verb !== 'status') return usage('--image applies to status');
  let assignments: { container: string; image: string }[] = [];
  if (verb === 'set') {
    try {
      assignments = parseImageAssignments(positionals.slice(1));
    } catch (err) {
      if (err instanceof UsageError) return usage(err.message);
      throw err;
    }
  }

  const kc = loadKubeConfig({
    ...(values.kubeconfig ? { kubeconfig: values.kubeconfig } : {}),
    ...(values.context ? { context: values.context } : {}),
  });
  const namespace = values.namespace ?? (kc.getContextObject(kc.getCurrentContext())?.namespace || 'default');
  const client = new KubeClient(kc, { userAgent: 'kube-actions-cli' });
  const api = new RolloutAPI(client, namespace);
  const fail = (message: string) => {
    io.err(`kube-actions rollout: ${message}\n`);
    return 1;
  };
  const notFound = () => fail(`rollout "${name}" not found in namespace "${namespace}"`);
  try {
    if (verb === 'list') {
      const list = await client.request<{ items: Rollout[] }>(
        'GET',
        resourcePath(ROLLOUT, values['all-namespaces'] ? '' : namespace),
      );
      if (values.output) io.out(format(list, values.output));
      else io.out(listTable(list.items, Boolean(values['all-namespaces']), Date.now()));
      return 0;
    }
    const ro = await api.get(name!);
    if (!ro) return notFound();
    switch (verb) {
      case 'get':
        if (values.output) {
          io.out(format(ro, values.output));
          return 0;
        }
        if (values.watch) return await watchGet(api, ro, io, timeoutMs);
        io.out(await api.render(ro));
        return 0;
      case 'status':
        return await status(api, ro, io, values.watch ?? true, timeoutMs ?? 5 * 60_000, values.image);
      case 'promote':
        return await api.apply(ro, promotePatches(ro, values.full), io);
      case 'abort':
        return await api.apply(ro, abortPatches(ro, await api.replicaSets(ro), new Date()), io);
      case 'retry':
        return await api.apply(ro, retryPatches(ro), io);
      case 'pause':
        return await api.apply(ro, pausePatches(ro), io);
      case 'set': {
        await api.jsonPatch(ro, setImagePatch(ro, assignments));
        io.out(`rollout "${name}" image updated\n`);
        return 0;
      }
      case 'undo': {
        const { revision, template, isCurrent } = undoTemplate(
          ro,
          await api.replicaSets(ro),
          toRevision || undefined,
        );
        if (isCurrent) {
          io.out(`rollout "${name}" is already at revision ${revision}: nothing to undo\n`);
          return 0;
        }
        await api.jsonPatch(ro, [
          { op: 'test', path: '/metadata/resourceVersion', value: ro.metadata.resourceVersion },
          { op: 'replace', path: '/spec/template', value: template },
        ]);
        io.out(`rollout "${name}" rolled back to the template of revision ${revision}\n`);
        return 0;
      }
    }
    return usage(`unknown command "${verb}"`);
  } catch (err) {
    if (err instanceof Refused) return fail(err.message);
    if (isNotFound(err)) return notFound();
    return fail((err as Error).message);
  } finally {
    await client.close();
  }
}

function format(v: unknown, output: string): string {
  return output === 'json' ? `${JSON.stringify(v, null, 2)}\n` : stringify(v);
}

class RolloutAPI {
  readonly client: KubeClient;
  readonly namespace: string;

  constructor(client: KubeClient, namespace: string) {
    this.client = client;
    this.namespace = namespace;
  }

  async get(name: string): Promise<Rollout | undefined> {
    try {
      return await this.client.get<Rollout>(ROLLOUT, this.namespace, name);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  private selector(ro: Rollout): string | undefined {
    const labels = Object.entries(ro.spec.selector?.matchLabels ?? {});
    return labels.length ? labels.map(([k, v]) => `${k}=${v}`).join(',') : undefined;
  }

  async replicaSets(ro: Rollout): Promise<ReplicaSet[]> {
    const selector = this.selector(ro);
    const list = await this.client.request<{ items: ReplicaSet[] }>(
      'GET',
      resourcePath(REPLICASETS, this.namespace),
      {
        ...(selector ? { query: { labelSelector: selector } } : {}),
      },
    );
    return list.items;
  }

  async pods(ro: Rollout): Promise<Pod[]> {
    const selector = this.selector(ro);
    if (!selector) return [];
    const list = await this.client.request<{ items: Pod[] }>(
      'GET',
      resourcePath({ apiVersion: 'v1', resource: 'pods' }, this.namespace),
      { query: { labelSelector: selector } },
    );
    return list.items;
  }

  async render(ro: Rollout, now = Date.now()): Promise<string> {
    const [rss, pods] = await Promise.all([this.replicaSets(ro), this.pods(ro)]);
    return renderRollout(ro, rss, pods, now);
  }

  async jsonPatch(ro: Rollout, ops: unknown[]): Promise<void> {
    await this.client.patch(ROLLOUT, this.namespace, ro.metadata.name, ops, PatchType.json);
  }

  /** Status first (what the controller acts on), then spec. */
  async apply(ro: Rollout, patches: Patches, io: RolloutIO): Promise<number> {
    if (patches.status) {
      await this.client.request('PATCH', resourcePath(ROLLOUT, this.namespace, ro.metadata.name, 'status'), {
        body: patches.status,
        contentType: PatchType.merge,
      });
    }
    if (patches.spec)
      await this.client.patch(ROLLOUT, this.namespace, ro.metadata.name, patches.spec, PatchType.merge);
    io.out(`${patches.message}\n`);
    return 0;
  }
}

/** Resolves after `ms`, or early when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });
}

/** A signal that Ctrl-C (or the caller's signal, or the timeout) aborts. */
function interruptible(
  io: RolloutIO,
  timeoutMs: number | undefined,
): { signal: AbortSignal; done: () => void } {
  const controller = new AbortController();
  const signals = [controller.signal];
  if (io.signal) signals.push(io.signal);
  if (timeoutMs !== undefined) signals.push(AbortSignal.timeout(Math.max(1, timeoutMs)));
  const onInt = () => controller.abort();
  if (!io.signal) process.once('SIGINT', onInt);
  return { signal: AbortSignal.any(signals), done: () => process.removeListener('SIGINT', onInt) };
}

async function watchGet(
  api: RolloutAPI,
  first: Rollout,
  io: RolloutIO,
  timeoutMs: number | undefined,
): Promise<number> {
  const { signal, done } = interruptible(io, timeoutMs);
  try {
    let ro: Rollout | undefined = first;
    let shown = '';
    while (!signal.aborted) {
      try {
        const now = Date.now();
        const [rss, pods] = await Promise.all([api.replicaSets(ro), api.pods(ro)]);
        // Redraw when something other than the passing of time changed (ages tick every second;
        // a terminal redraws anyway).
        const key = renderRollout(ro, rss, pods, 0);
        if (io.isTTY) io.out(`\x1b[H\x1b[2J${renderRollout(ro, rss, pods, now)}`);
        else if (key !== shown) io.out(`${shown ? '\n' : ''}${renderRollout(ro, rss, pods, now)}`);
        shown = key;
      } catch {
        // A failed poll keeps the last drawing; the next one tries again.
      }
      await sleep(1000, signal);
      if (signal.aborted) break;
      const previous: Rollout = ro;
      ro = await api.get(first.metadata.name).catch(() => previous);
      if (!ro) {
        io.err(`kube-actions rollout: rollout "${first.metadata.name}" was deleted\n`);
        return 1;
      }
    }
    return 0;
  } finally {
    done();
  }
}

/** Whether the rollout waits in a canary pause step with a duration (which ends by itself). */
function inTimedPause(ro: Rollout): boolean {
  if (ro.spec.paused) return false;
  const step = ro.spec.strategy?.canary?.steps?.[ro.status?.currentStepIndex ?? -1] as
    { pause?: { duration?: unknown } } | undefined;
  return step?.pause?.duration !== undefined && step.pause.duration !== null && step.pause.duration !== '';
}

/** Whether the rollout's template runs `image` and the controller has seen that template. */
function runsImage(ro: Rollout, image: string): boolean {
  const containers = [
    ...(ro.spec.template?.spec?.containers ?? []),
    ...((ro.spec.template?.spec as { initContainers?: { image?: string }[] } | undefined)?.initContainers ??
      []),
  ];
  return (
    containers.some((c) => c.image === image) &&
    ro.status?.observedGeneration === String(ro.metadata.generation)
  );
}

async function status(
  api: RolloutAPI,
  first: Rollout,
  io: RolloutIO,
  watch: boolean,
  timeoutMs: number,
  image?: string,
): Promise<number> {
  const name = first.metadata.name;
  const line = (p: { phase: string; message: string }) => `${p.phase}${p.message ? ` - ${p.message}` : ''}`;
  // Until the template runs the image, the phase is the previous revision's: say what is awaited.
  const phaseOf = (ro: Rollout) =>
    image && !runsImage(ro, image)
      ? { phase: 'Waiting', message: `the rollout does not run ${image} yet` }
      : rolloutPhase(ro);
  if (!watch) {
    const p = phaseOf(first);
    io.out(`${line(p)}\n`);
    return p.phase === 'Degraded' || p.phase === 'Waiting' ? 1 : 0;
  }
  const deadline = Date.now() + timeoutMs;
  const { signal, done } = interruptible(io, timeoutMs);
  try {
    let ro: Rollout | undefined = first;
    let last = '';
    let lastError = '';
    for (;;) {
      if (ro) {
        const p = phaseOf(ro);
        if (line(p) !== last) io.out(`${line(p)}\n`);
        last = line(p);
        // A timed pause step ends by itself: a gate waits through it. An indefinite one (or a
        // pause by hand) waits for a person, so the gate ends there.
        if (p.phase === 'Healthy' || (p.phase === 'Paused' && !inTimedPause(ro))) return 0;
        if (p.phase === 'Degraded') {
          io.err(`kube-actions rollout: rollout "${name}" is Degraded: ${p.message}\n`);
          return 1;
        }
      }
      await sleep(500, signal);
      if (signal.aborted) break;
      try {
        ro = await api.get(name);
        lastError = '';
      } catch (err) {
        lastError = (err as Error).message;
      }
      if (!ro) {
        io.err(`kube-actions rollout: rollout "${name}" not found in namespace "${api.namespace}"\n`);
        return 1;
      }
    }
    const timedOut = Date.now() >= deadline - 10;
    io.err(
      `kube-actions rollout: ${timedOut ? `timed out after ${timeoutMs >= 60_000 && timeoutMs % 60_000 === 0 ? `${timeoutMs / 60_000}m` : `${timeoutMs / 1000}s`}` : 'interrupted'} waiting for rollout "${name}" (last: ${last}${lastError ? `; ${lastError}` : ''})\n`,
    );
    return 1;
  } finally {
    done();
  }
}
