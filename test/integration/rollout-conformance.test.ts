// Differential conformance (issue 14): a few Rollout specs run side by side under the real Argo
// Rollouts controller (v1.10.2, built from its Go module) and under ours, on the same control
// plane; at every checkpoint the replica counts per revision, Service selectors, canary Ingress
// weight, phase, step, pause and abort must match, except where the README lists an intended
// deviation with its reason (test/cluster/rollout-conformance.ts reads that table). bench/peers.ts
// runs the same comparison over more specs.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { KubeClient } from '../../src/core/kube/client.ts';
import { silentLogger } from '../../src/controller/runtime/log.ts';
import { Manager } from '../../src/controller/runtime/manager.ts';
import { setupRolloutController } from '../../src/controller/rollout/controller.ts';
import { setupAnalysisController } from '../../src/controller/analysis/controller.ts';
import { installCRDs } from '../cluster/crds.ts';
import {
  CONFORMANCE_SCENARIOS,
  intendedDeviations,
  isIntended,
  runScenario,
  startArgoRollouts,
  type Deviation,
  type PeerProcess,
  type ScenarioResult,
} from '../cluster/rollout-conformance.ts';
import { eventually, useTestNamespace } from '../cluster/testing.ts';

const ours = useTestNamespace('conformance-ours');
const argo = useTestNamespace('conformance-argo');
let client: KubeClient;
let manager: Manager;
let peer: PeerProcess;
let deviations: Deviation[];
const results = new Map<string, Promise<ScenarioResult>>();

beforeAll(async () => {
  await installCRDs(ours.kc);
  client = new KubeClient(ours.kc);
  deviations = await intendedDeviations();
  manager = new Manager({ kubeConfig: ours.kc, logger: silentLogger });
  setupRolloutController(manager, { namespace: ours.name });
  setupAnalysisController(manager, { namespace: ours.name });
  await manager.start();
  await eventually('our controller synced', () => Promise.resolve(manager.readiness().ready || undefined));
  peer = await startArgoRollouts(process.env.KUBECONFIG!, argo.name);
  // The scenarios run concurrently (each its own Rollouts); each test awaits its own.
  for (const s of CONFORMANCE_SCENARIOS)
    results.set(s.name, runScenario(client, s, { ours: ours.name, argo: argo.name }));
  // A rejected scenario is reported by its test; this keeps Node from calling it unhandled first.
  for (const r of results.values()) r.catch(() => undefined);
}, 180_000);

afterAll(async () => {
  await Promise.allSettled(results.values());
  await peer?.stop();
  await manager?.stop();
  await client?.close();
});

const table = (r: ScenarioResult) =>
  r.checkpoints
    .map(
      (c) =>
        `${c.label}${c.reached.ours && c.reached.argo ? '' : ` (reached: ours ${c.reached.ours}, Argo ${c.reached.argo})`}\n` +
        `  ours: ${JSON.stringify(c.ours)}\n  Argo: ${JSON.stringify(c.argo)}`,
    )
    .join('\n');

describe('the same specs under Argo Rollouts and ours', () => {
  test.each(CONFORMANCE_SCENARIOS.map((s) => [s.name]))(
    '%s: every checkpoint matches, or differs only as the README says',
    async (name) => {
      const r = await results.get(name)!;
      const unexpected = r.mismatches.filter((m) => !isIntended(m, deviations));
      // Every checkpoint was reached by both (a "reached" mismatch is never an intended one).
      expect(r.checkpoints.every((c) => c.reached.ours && c.reached.argo)).toBe(true);
      if (unexpected.length) {
        throw new Error(
          `${unexpected.map((m) => `${m.checkpoint}: ${m.field}: ours ${JSON.stringify(m.ours)}, Argo ${JSON.stringify(m.argo)}`).join('\n')}\n\n${table(r)}\n\nArgo's log:\n${peer.logs.slice(-10).join('\n')}`,
        );
      }
      expect(r.checkpoints).toHaveLength(
        CONFORMANCE_SCENARIOS.find((s) => s.name === name)!.checkpoints.length,
      );
    },
    240_000,
  );

  test('each deviation the README lists for these specs is still one (no stale rows)', async () => {
    const all = await Promise.all(results.values());
    const names = new Set(CONFORMANCE_SCENARIOS.map((s) => s.name));
    const stale = deviations
      .filter((d) => names.has(d.scenario))
      .filter(
        (d) => !all.some((r) => r.mismatches.some((m) => isIntended(m, [d]) && m.scenario === d.scenario)),
      );
    expect(stale).toEqual([]);
  }, 240_000);
});
