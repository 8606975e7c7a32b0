// Installs the project's CRDs (deploy/crds, or a peer's) into the test cluster with server-side apply and waits
// until the apiserver serves them. Idempotent, so every test file may call it.
import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { KubeClient, PatchType } from '../../src/core/kube/client.ts';
import type { KubeConfig } from '@kubernetes/client-node';

const CRDS = {
  apiVersion: 'apiextensions.k8s.io/v1',
  resource: 'customresourcedefinitions',
  namespaced: false,
};

/** `dir`: another directory of CRDs (a peer's, bench/peers/build-peers.sh). */
export async function installCRDs(
  kc: KubeConfig,
  dir = resolve(import.meta.dirname, '../../deploy/crds'),
): Promise<void> {
  const client = new KubeClient(kc);
  try {
    for (const file of (await readdir(dir)).filter((f) => f.endsWith('.yaml')).sort()) {
      for (const doc of parseAllDocuments(await readFile(join(dir, file), 'utf8'))) {
        const crd = doc.toJSON() as { metadata: { name: string } };
        await client.patch(CRDS, '', crd.metadata.name, JSON.stringify(crd), PatchType.apply, {
          fieldManager: 'kube-actions-tests',
          force: true,
        });
        for (let i = 0; ; i++) {
          const live = await client.get<{
            metadata?: object;
            status?: { conditions?: { type: string; status: string }[] };
          }>(CRDS, '', crd.metadata.name);
          if (live.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) break;
          if (i > 100) throw new Error(`CRD ${crd.metadata.name} not established`);
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    }
  } finally {
    await client.close();
  }
}
