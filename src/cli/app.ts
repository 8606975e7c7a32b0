// kube-actions app: look at and operate Applications, like `argocd app` but straight against the
// cluster (no API server in between): list, get, diff, sync, rollback.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createTwoFilesPatch } from 'diff';
import { stringify } from 'yaml';
import { comparable } from '../core/kube/apply.ts';
import { ResourceManager } from '../core/kube/apply.ts';
import { loadKubeConfig } from '../core/kube/config.ts';
import { RESTMapper } from '../core/kube/discovery.ts';
import { RepoCache } from '../core/gitops/repo-cache.ts';
import { KubeClient, isNotFound, PatchType } from '../core/kube/client.ts';
import { Logger } from '../controller/runtime/log.ts';
import { resourcePath } from '../core/kube/objects.ts';
import { LiveObjects, managedInformers } from '../controller/sync/live.ts';
import { ApplicationReconciler, ComparisonFailure } from '../controller/sync/reconciler.ts';
import { ManifestSource } from '../controller/sync/source.ts';
import {
  APPLICATION,
  hasMultipleSources,
  sourcesOf,
  type Application,
  type SyncOperation,
} from '../controller/sync/types.ts';
import { parseDurationMs } from '../core/duration.ts';
import { age, columns } from './format.ts';

export const APP_USAGE = `usage: kube-actions app <list|get|diff|sync|rollback> [options]

  list                       Applications with sync and health status
  get NAME                   one Application: source, status, resources, last operation
  diff NAME                  what a sync would change (exit 1 when there are differences)
  sync NAME [--revision R] [--prune] [--dry-run] [--resource GROUP:KIND:[NAMESPACE/]NAME]... [--no-wait]
                             request a sync (as Argo CD's operation field) and wait for it;
                             --resource (repeatable): only those objects, no hooks, no history
                             --revision with spec.sources: one per source, R1,R2 ('' = targetRevision)
  rollback NAME ID [--no-wait]
                             sync the revision of history entry ID (refused while automated)

options:
  -n, --namespace NS         the Applications' namespace (default: the kubeconfig's, else default)
  -A, --all-namespaces       list: every namespace
  -o, --output FORMAT        json or yaml instead of the human format
  --timeout DURATION         sync/rollback: how long to wait (default 5m)
  --kubeconfig PATH, --context NAME
`;

type Out = (text: string) => void;

export async function appCommand(argv: string[], out: Out = (t) => process.stdout.write(t)): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      namespace: { type: 'string', short: 'n' },
      'all-namespaces': { type: 'boolean', short: 'A', default: false },
      output: { type: 'string', short: 'o' },
      revision: { type: 'string' },
      prune: { type: 'boolean', default: false },
      resource: { type: 'string', multiple: true },
      'dry-run': { type: 'boolean', default: false },
      'no-wait': { type: 'boolean', default: false },
      timeout: { type: 'string', default: '5m' },
      kubeconfig: { type: 'string' },
      context: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const [verb, name, id] = positionals;
  if (values.help || !verb) {
    out(APP_USAGE);
    return values.help ? 0 : 2;
  }
  const usage = (why: string) => {
    process.stderr.write(`kube-actions app: ${why}\n\n${APP_USAGE}`);
    return 2;
  };
  if (values.output && !['json', 'yaml'].includes(values.output))
    return usage('--output must be json or yaml');
  const timeoutMs = parseDurationMs(values.timeout);
  if (timeoutMs === undefined) return usage('--timeout must be a duration such as 90s or 5m');
  const kc = loadKubeConfig({
    ...(values.kubeconfig ? { kubeconfig: values.kubeconfig } : {}),
    ...(values.context ? { context: values.context } : {}),
  });
  const namespace = values.namespace ?? (kc.getContextObject(kc.getCurrentContext())?.namespace || 'default');
  const client = new KubeClient(kc, { userAgent: 'kube-actions-cli' });
  const format = values.output as 'json' | 'yaml' | undefined;
  const print = (v: unknown) => out(format === 'json' ? `${JSON.stringify(v, null, 2)}\n` : stringify(v));
  try {
    switch (verb) {
      case 'list': {
        const path = resourcePath(APPLICATION, values['all-namespaces'] ? '' : namespace);
        const list = await client.request<{ items: Application[] }>('GET', path);
        if (format) print(list);
        else out(table(list.items, values['all-namespaces']));
        return 0;
      }
      case 'get': {
        if (!name) return usage('get needs an application name');
        const app = await getApp(client, namespace, name);
        if (!app) return notFound(namespace, name);
        if (format) print(app);
        else out(describeApplication(app));
        return 0;
      }
      case 'diff': {
        if (!name) return usage('diff needs an application name');
        const app = await getApp(client, namespace, name);
        if (!app) return notFound(namespace, name);
        return await diff(client, app, out);
      }
      case 'sync':
      case 'rollback': {
        if (!name) return usage(`${verb} needs an application name`);
        const app = await getApp(client, namespace, name);
        if (!app) return notFound(namespace, name);
        let operation: SyncOperation;
        if (verb === 'rollback') {
          if (id === undefined || !/^\d+$/.test(id))
            return usage('rollback needs a history ID (see `kube-actions app get`)');
          if (app.spec.syncPolicy?.automated && app.spec.syncPolicy.automated.enabled !== false) {
            process.stderr.write(
              `kube-actions app: rollback of ${name} refused: automated sync is enabled and would undo it; disable syncPolicy.automated first\n`,
            );
            return 1;
          }
          const entry = app.status?.history?.find((h) => h.id === Number(id));
          if (!entry)
            return usage(
              `no history entry ${id} (have: ${(app.status?.history ?? []).map((h) => h.id).join(', ') || 'none'})`,
            );
          operation = {
            sync: { ...revisionRequest(app, entry.revision), prune: values.prune },
            initiatedBy: { username: 'kube-actions-cli' },
          };
        } else {
          const resources = [];
          for (const r of values.resource ?? []) {
            // Argo CD's syntax: GROUP:KIND:NAME or GROUP:KIND:NAMESPACE/NAME, the group empty for core kinds.
            const m = /^([^:]*):([^:/]+):(?:([^:/]+)\/)?([^:/]+)$/.exec(r);
            if (!m)
              return usage(
                `--resource ${JSON.stringify(r)}: expected GROUP:KIND:NAME or GROUP:KIND:NAMESPACE/NAME`,
              );
            resources.push({ group: m[1]!, kind: m[2]!, name: m[4]!, ...(m[3] ? { namespace: m[3] } : {}) });
          }
          operation = {
            sync: {
              ...(values.revision ? revisionRequest(app, values.revision) : {}),
              prune: values.prune,
              ...(values['dry-run'] ? { dryRun: true } : {}),
              ...(resources.length ? { resources } : {}),
            },
            initiatedBy: { username: 'kube-actions-cli' },
          };
        }
        if (app.operation) {
          process.stderr.write(`kube-actions app: ${name} already has an operation in progress\n`);
          return 1;
        }
        const requested = new Date();
        await client.patch(APPLICATION, namespace, name, { operation }, PatchType.merge);
        if (values['no-wait']) {
          out(`${verb} of ${name} requested\n`);
          return 0;
        }
        return await waitForOperation(client, namespace, name, requested, timeoutMs, out);
      }
      default:
        return usage(`unknown subcommand "${verb}"`);
    }
  } finally {
    await client.close();
  }
}

async function getApp(client: KubeClient, namespace: string, name: string): Promise<Application | undefined> {
  try {
    return await client.request<Application>('GET', resourcePath(APPLICATION, namespace, name));
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

function notFound(namespace: string, name: string): number {
  process.stderr.write(`kube-actions app: application "${name}" not found in namespace "${namespace}"\n`);
  return 1;
}

function table(apps: Application[], withNamespace: boolean): string {
  if (apps.length === 0) return 'No applications found.\n';
  const rows = [[...(withNamespace ? ['NAMESPACE'] : []), 'NAME', 'SYNC', 'HEALTH', 'REVISION', 'AGE']];
  for (const a of apps) {
    rows.push([
      ...(withNamespace ? [a.metadata.namespace] : []),
      a.metadata.name,
      a.status?.sync?.status ?? 'Unknown',
      a.status?.health?.status ?? 'Unknown',
      shortRevision(a.status?.sync?.revision ?? ''),
      age((a.metadata as { creationTimestamp?: string }).creationTimestamp),
    ]);
  }
  return columns(rows);
}

/** Each revision's first 12 characters (several with multiple sources, joined with ','). */
function shortRevision(revision: string): string {
  return revision
    .split(',')
    .map((r) => r.slice(0, 12))
    .join(',');
}

/**
 * A sync's revision as the operation asks for it: with multiple sources, Argo CD's `revisions`,
 * one per source from a ','-separated list (an empty entry: that source's targetRevision).
 */
function revisionRequest(app: Application, revision: string): { revision?: string; revisions?: string[] } {
  return hasMultipleSources(app) ? { revisions: revision.split(',') } : { revision };
}

export function describeApplication(app: Application): string {
  const s = app.status ?? {};
  // sourceTypes lists the rendered sources only: a ref-only source renders nothing.
  const types = s.sourceTypes ?? (s.sourceType ? [s.sourceType] : []);
  let rendered = 0;
  const sources = sourcesOf(app).map((src) => {
    const type =
      hasMultipleSources(app) && src.ref && !src.path && !src.chart ? undefined : types[rendered++];
    const what = src.chart ? `chart ${src.chart}` : (src.path ?? '.');
    return `${src.repoURL} ${what} @ ${src.targetRevision || (src.chart ? '*' : 'HEAD')}${src.ref ? ` (ref ${src.ref})` : ''}${type ? ` (${type})` : ''}`;
  });
  const lines = [
    `Name:           ${app.metadata.namespace}/${app.metadata.name}`,
    ...(sources.length > 1
      ? ['Sources:', ...sources.map((l, i) => `  ${i + 1}. ${l}`)]
      : [`Source:         ${sources[0] ?? ''}`]),
    `Destination:    ${app.spec.destination.namespace ?? ''}`,
    `Sync Policy:    ${app.spec.syncPolicy?.automated ? `automated (prune=${app.spec.syncPolicy.automated.prune ?? false}, selfHeal=${app.spec.syncPolicy.automated.selfHeal ?? false})` : 'manual'}`,
    `Sync Status:    ${s.sync?.status ?? 'Unknown'}${s.sync?.revision ? ` to ${shortRevision(s.sync.revision)}` : ''}`,
    `Health Status:  ${s.health?.status ?? 'Unknown'}${s.health?.message ? ` (${s.health.message})` : ''}`,
  ];
  for (const c of s.conditions ?? []) lines.push(`Condition:      ${c.type}: ${c.message}`);
  const op = s.operationState;
  if (op) lines.push(`Last Sync:      ${op.phase} at ${op.finishedAt ?? op.startedAt}: ${op.message}`);
  if (s.history?.length) {
    lines.push(
      '',
      columns([
        ['ID', 'DEPLOYED', 'REVISION'],
        ...s.history.map((h) => [String(h.id), h.deployedAt, shortRevision(h.revision)]),
      ]).trimEnd(),
    );
  }
  if (s.resources?.length) {
    const rows = [['GROUP', 'KIND', 'NAMESPACE', 'NAME', 'STATUS', 'HEALTH', 'MESSAGE']];
    for (const r of s.resources) {
      rows.push([
        r.group,
        r.kind,
        r.namespace,
        r.name,
        r.requiresPruning ? 'OutOfSync (prune)' : (r.status ?? ''),
        r.health?.status ?? '',
        r.health?.message ?? '',
      ]);
    }
    lines.push('', columns(rows).trimEnd());
  }
  return `${lines.join('\n')}\n`;
}

/** Renders and dry-runs exactly as the controller would, and prints a unified diff per object. */
async function diff(client: KubeClient, app: Application, out: Out): Promise<number> {
  const cache = await mkdtemp(join(tmpdir(), 'kube-actions-diff-'));
  const informers = managedInformers(client);
  try {
    const mapper = new RESTMapper(client);
    const repos = new RepoCache({ dir: cache, refreshIntervalMs: 0 });
    const reconciler = new ApplicationReconciler({
      client,
      resources: new ResourceManager(client, mapper),
      mapper,
      repos,
      source: new ManifestSource(repos),
      live: new LiveObjects({ informer: informers.informer }),
      logger: new Logger({ level: 'error' }),
      getApplication: () => Promise.resolve(app),
    });
    let comparison;
    try {
      comparison = await reconciler.diff(app);
    } catch (err) {
      if (err instanceof ComparisonFailure) {
        process.stderr.write(`kube-actions app diff: ${err.message}\n`);
        return 2;
      }
      throw err;
    }
    let differences = 0;
    for (const c of comparison.objects) {
      if (c.error) {
        differences++;
        out(`===== ${c.resolved.key} =====\nerror: ${c.error}\n`);
        continue;
      }
      if (c.inSync) continue;
      differences++;
      const [liveView, desiredView] = maskSecrets(
        c.live ? comparable(c.live) : undefined,
        comparable(c.merged ?? c.resolved.object),
      );
      const before = liveView ? stringify(liveView) : '';
      const after = stringify(desiredView);
      out(
        `===== ${c.resolved.key} =====\n${createTwoFilesPatch('live', 'desired', before, after, undefined, undefined, { context: 3 }).split('\n').slice(2).join('\n')}`,
      );
    }
    for (const e of comparison.extraneous) {
      differences++;
      out(`===== ${e.resolved.key} (will be pruned) =====\n`);
    }
    if (differences === 0)
      out(`${app.metadata.name} is in sync with ${shortRevision(comparison.revision)}\n`);
    return differences === 0 ? 0 : 1;
  } finally {
    await informers.stop();
    await rm(cache, { recursive: true, force: true });
  }
}

/**
 * Secret values never reach the terminal: each is replaced by a mask that still shows whether it
 * changed (as Argo CD's diff does).
 */
export function maskSecrets(live: unknown, desired: unknown): [unknown, unknown] {
  const isSecret = (o: unknown) => (o as { kind?: string } | undefined)?.kind === 'Secret';
  if (!isSecret(desired) && !isSecret(live)) return [live, desired];
  const values = (o: unknown, field: string) =>
    ((o as Record<string, unknown> | undefined)?.[field] ?? {}) as Record<string, unknown>;
  const mask = (o: unknown, other: unknown) => {
    if (!o) return o;
    const out = { ...(o as Record<string, unknown>) };
    for (const field of ['data', 'stringData']) {
      const mine = values(o, field);
      if (!Object.keys(mine).length) continue;
      const theirs = { ...values(other, 'data'), ...values(other, 'stringData') };
      out[field] = Object.fromEntries(
        Object.keys(mine).map((k) => [
          k,
          theirs[k] === undefined || theirs[k] === mine[k] ? '********' : '******** (changed)',
        ]),
      );
    }
    return out;
  };
  return [mask(live, desired), mask(desired, live)];
}

async function waitForOperation(
  client: KubeClient,
  namespace: string,
  name: string,
  requested: Date,
  timeoutMs: number,
  out: Out,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const app = await getApp(client, namespace, name);
    const op = app?.status?.operationState;
    // Done when the requested operation is cleared and a result newer than the request is in.
    if (app && !app.operation && op?.finishedAt && Date.parse(op.finishedAt) >= requested.getTime() - 1000) {
      const results = op.syncResult?.resources ?? [];
      for (const r of results)
        out(
          `${r.status.padEnd(12)} ${r.kind}/${r.name}${r.namespace ? ` -n ${r.namespace}` : ''}  ${r.message}\n`,
        );
      out(`${op.phase}: ${op.message}\n`);
      return op.phase === 'Succeeded' ? 0 : 1;
    }
    if (Date.now() > deadline) {
      process.stderr.write(
        `kube-actions app: timed out waiting for the operation on ${name} (is the controller running?)\n`,
      );
      return 1;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}
