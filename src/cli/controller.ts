// kube-actions controller: runs the reconcilers in this process until SIGTERM, on any cluster the
// kubeconfig (or the pod's service account) reaches. Several replicas elect one leader with a
// Lease; only the leader reconciles, the others keep warm caches and take over when it goes.
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { loadKubeConfig } from '../core/kube/config.ts';
import { isLogLevel, Logger } from '../controller/runtime/log.ts';
import { Manager } from '../controller/runtime/manager.ts';
import { setupAnalysisController } from '../controller/analysis/controller.ts';
import { setupRolloutController } from '../controller/rollout/controller.ts';
import { setupApplicationController } from '../controller/sync/controller.ts';
import { setupApplicationSetController } from '../controller/appset/controller.ts';
import type { SecretPolicy } from '../controller/analysis/args.ts';
import { DEFAULT_MAX_BODY, WEBHOOK_SERVER_OPTIONS } from '../controller/sync/webhook.ts';
import { parseDurationMs } from '../core/duration.ts';

export const CONTROLLER_USAGE = `usage: kube-actions controller [options]

Runs the Application controller (GitOps sync), the ApplicationSet controller (Applications
generated from lists and Git) and the Rollout controller (progressive delivery) until SIGTERM or
SIGINT.

options:
  --kubeconfig PATH            kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster)
  --context NAME               kubeconfig context
  --application-namespace NS   read Applications from NS only (default: all namespaces)
  --rollout-namespace NS       run Rollouts and AnalysisRuns in NS only (default: all namespaces):
                               scoped apart from Applications, which deploy Rollouts elsewhere
  --namespace NS               both of the above
  --namespaced                 a namespace-scoped install (needs --namespace): the controller
                               touches only that namespace (Role, not ClusterRole): Applications
                               deploy only there, no cluster-scoped objects, no
                               ClusterAnalysisTemplates, no CreateNamespace
  --controller-namespace NS    where the leader Lease and repository Secrets live
                               (default: $POD_NAMESPACE, else kube-actions)
  --leader-elect=false         run without leader election (a single replica)
  --lease-name NAME            leader Lease name (default kube-actions-controller)
  --lease-duration DURATION    how long a silent leader keeps the lease (default 15s)
  --renew-deadline DURATION    how long the leader retries renewing before it steps down (default 10s)
  --retry-period DURATION      time between acquire/renew attempts (default 2s)
  --identity NAME              this replica's name in the Lease (default $POD_NAME, else host + random)
  --metrics-port N             /metrics, /healthz, /readyz (default 8080; 0 picks one)
  --metrics-bind-address ADDR  where they listen (default 0.0.0.0: the kubelet probes the pod IP)
  --webhook-bind-address ADDR  where the webhook listens (default 0.0.0.0)
  --webhook-port N             Git push webhook at POST /api/webhook (default 8081; 0 picks one)
  --webhook-max-body BYTES     largest webhook body read (default 2097152; GitHub's pushes are KBs)
  --poll-interval DURATION     how often Git is asked when no webhook comes (default 3m)
  --analysis-secrets any|labelled
                               Secrets analysis may read (args' secretKeyRef, githubWorkflow
                               tokens): any in the run's namespace (default, as Argo), or only those
                               labelled kube-actions.dev/analysis-secret=true
  --workers N                  applications reconciled in parallel (default 10)
  --cache-dir DIR              git mirrors, checkouts and the render cache
  --log-level LEVEL            debug, info, warn, error (default info)

The webhook secret is read from $KUBE_ACTIONS_WEBHOOK_SECRET (never a flag); without it the
webhook refuses every request.
`;

export async function controllerCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      kubeconfig: { type: 'string' },
      context: { type: 'string' },
      namespace: { type: 'string', default: '' },
      'application-namespace': { type: 'string' },
      'rollout-namespace': { type: 'string' },
      namespaced: { type: 'boolean', default: false },
      'controller-namespace': { type: 'string' },
      'leader-elect': { type: 'string', default: 'true' },
      'lease-name': { type: 'string', default: 'kube-actions-controller' },
      'lease-duration': { type: 'string', default: '15s' },
      'renew-deadline': { type: 'string', default: '10s' },
      'retry-period': { type: 'string', default: '2s' },
      identity: { type: 'string' },
      'metrics-port': { type: 'string', default: '8080' },
      'metrics-bind-address': { type: 'string', default: '0.0.0.0' },
      'webhook-bind-address': { type: 'string', default: '0.0.0.0' },
      'webhook-port': { type: 'string', default: '8081' },
      'webhook-max-body': { type: 'string', default: String(DEFAULT_MAX_BODY) },
      'analysis-secrets': { type: 'string', default: 'any' },
      'poll-interval': { type: 'string', default: '3m' },
      workers: { type: 'string', default: '10' },
      'cache-dir': { type: 'string' },
      'log-level': { type: 'string', default: 'info' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(CONTROLLER_USAGE);
    return 0;
  }
  const usage = (why: string) => {
    process.stderr.write(`kube-actions controller: ${why}\n\n${CONTROLLER_USAGE}`);
    return 2;
  };
  const port = (name: 'metrics-port' | 'webhook-port') => {
    const n = Number(values[name]);
    return Number.isInteger(n) && n >= 0 && n < 65536 ? n : undefined;
  };
  const metricsPort = port('metrics-port');
  const webhookPort = port('webhook-port');
  if (metricsPort === undefined) return usage('--metrics-port must be a port number');
  if (webhookPort === undefined) return usage('--webhook-port must be a port number');
  const analysisSecrets = values['analysis-secrets'] as SecretPolicy;
  if (analysisSecrets !== 'any' && analysisSecrets !== 'labelled')
    return usage('--analysis-secrets must be any or labelled');
  const maxBody = Number(values['webhook-max-body']);
  if (!Number.isInteger(maxBody) || maxBody < 1)
    return usage('--webhook-max-body must be a positive number of bytes');
  const pollIntervalMs = parseDurationMs(values['poll-interval']);
  if (pollIntervalMs === undefined || pollIntervalMs < 1000)
    return usage('--poll-interval must be a duration of at least 1s, e.g. 3m');
  const workers = Number(values.workers);
  if (!Number.isInteger(workers) || workers < 1) return usage('--workers must be a positive integer');
  if (!isLogLevel(values['log-level'])) return usage('--log-level must be debug, info, warn or error');
  const scoped = values.namespaced ? values.namespace : undefined;
  if (values.namespaced) {
    if (!values.namespace) return usage('--namespaced needs --namespace: the one namespace it may touch');
    if (values['application-namespace'] || values['rollout-namespace'])
      return usage(
        '--namespaced runs everything in --namespace: drop --application-namespace/--rollout-namespace',
      );
  }
  if (!['true', 'false'].includes(values['leader-elect']))
    return usage('--leader-elect must be true or false');
  const seconds = (name: 'lease-duration' | 'renew-deadline' | 'retry-period') => {
    const ms = parseDurationMs(values[name]);
    return ms !== undefined && ms >= 1000 ? ms / 1000 : undefined;
  };
  const lease = {
    leaseDurationSeconds: seconds('lease-duration'),
    renewDeadlineSeconds: seconds('renew-deadline'),
    retryPeriodSeconds: seconds('retry-period'),
  };
  const flags = {
    leaseDurationSeconds: 'lease-duration',
    renewDeadlineSeconds: 'renew-deadline',
    retryPeriodSeconds: 'retry-period',
  };
  for (const [k, v] of Object.entries(lease))
    if (v === undefined)
      return usage(`--${flags[k as keyof typeof flags]} must be a duration of at least 1s`);
  if (!(
    lease.retryPeriodSeconds! < lease.renewDeadlineSeconds! &&
    lease.renewDeadlineSeconds! < lease.leaseDurationSeconds!
  )) {
    return usage('leader election needs --retry-period < --renew-deadline < --lease-duration');
  }
  const identity = values.identity ?? process.env.POD_NAME;
  const controllerNamespace =
    values['controller-namespace'] ?? process.env.POD_NAMESPACE ?? scoped ?? 'kube-actions';
  if (scoped && controllerNamespace !== scoped)
    return usage(
      `--namespaced: the Lease and repository Secrets must be in ${scoped} too, not ${controllerNamespace}`,
    );

  const logger = new Logger({ level: values['log-level'] });
  const kubeConfig = loadKubeConfig({
    ...(values.kubeconfig ? { kubeconfig: values.kubeconfig } : {}),
    ...(values.context ? { context: values.context } : {}),
  });
  const manager = new Manager({
    kubeConfig,
    logger,
    server: { port: metricsPort, host: values['metrics-bind-address'] },
    ...(values['leader-elect'] === 'true'
      ? {
          leaderElection: {
            namespace: controllerNamespace,
            name: values['lease-name'],
            ...(identity ? { identity } : {}),
            leaseDurationSeconds: lease.leaseDurationSeconds!,
            renewDeadlineSeconds: lease.renewDeadlineSeconds!,
            retryPeriodSeconds: lease.retryPeriodSeconds!,
          },
        }
      : {}),
  });
  // As Argo CD scopes only Applications: an Application in the controller's namespace deploys
  // Rollouts to any namespace, and they must run there.
  const applicationNamespace = values['application-namespace'] ?? values.namespace;
  const rolloutNamespace = values['rollout-namespace'] ?? values.namespace;
  const apps = setupApplicationController(manager, {
    namespace: applicationNamespace,
    credentialsNamespace: controllerNamespace,
    pollIntervalMs,
    maxConcurrentReconciles: workers,
    webhookSecret: process.env.KUBE_ACTIONS_WEBHOOK_SECRET ?? '',
    webhookMaxBodyBytes: maxBody,
    ...(scoped ? { managedNamespace: scoped } : {}),
    ...(values['cache-dir'] ? { cacheDir: values['cache-dir'] } : {}),
  });
  // ApplicationSets generate Applications into their own namespace, so they are read where
  // Applications are; they share the Application controller's Git mirrors.
  setupApplicationSetController(manager, {
    namespace: applicationNamespace,
    repos: apps.repos,
    pollIntervalMs,
  });
  setupRolloutController(manager, {
    namespace: rolloutNamespace,
    maxConcurrentReconciles: workers,
    ...(scoped ? { clusterScope: false } : {}),
  });
  setupAnalysisController(manager, { namespace: rolloutNamespace, secretPolicy: analysisSecrets });
  // The webhook is served by every replica: a push only wakes reconciles, which run on the leader.
  const webhook = createServer(WEBHOOK_SERVER_OPTIONS, (req, res) => {
    if ((req.url ?? '').split('?')[0] !== '/api/webhook') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    apps.webhook(req, res).catch((err: unknown) => {
      // A sender hanging up mid-body is the sender's problem, not an error of ours.
      const aborted =
        (err as NodeJS.ErrnoException).code === 'ECONNRESET' || (err as Error).message === 'aborted';
      if (aborted) logger.info('webhook sender hung up', { error: (err as Error).message });
      else logger.error('webhook failed', { error: (err as Error).message });
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    webhook.once('error', reject);
    webhook.listen(webhookPort, values['webhook-bind-address'], resolve);
  });
  const stop = () => void manager.stop();
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  await manager.start();
  logger.info('controller listening', {
    metricsPort: manager.address()?.port,
    webhookPort: (webhook.address() as { port: number }).port,
  });
  const reason = await manager.done;
  await new Promise<void>((resolve) => webhook.close(() => resolve()));
  webhook.closeAllConnections();
  // Losing the lease exits non-zero so the pod restarts and campaigns again.
  return reason === 'leadership-lost' ? 1 : 0;
}
