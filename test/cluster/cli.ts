// Command line for the local control plane, for people and for `make demo`:
//
//   node test/cluster/cli.ts up   [--dir DIR] [--nodes N]   start it detached; prints the kubeconfig path
//   node test/cluster/cli.ts down [--dir DIR]               stop it and remove DIR
//   node test/cluster/cli.ts status [--dir DIR]             print its state, exit 1 when not running
//   node test/cluster/cli.ts build                          only build (or find) the cached binaries
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ensureBinaries, LocalControlPlane } from './controlplane.ts';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    dir: { type: 'string', default: join(homedir(), '.cache', 'kube-actions', 'demo-cluster') },
    nodes: { type: 'string', default: '3' },
  },
});

async function main(): Promise<number> {
  switch (positionals[0]) {
    case 'build':
      console.log(await ensureBinaries());
      return 0;
    case 'up': {
      const existing = await LocalControlPlane.load(values.dir).catch(() => undefined);
      if (existing) await existing.stop();
      const cluster = await LocalControlPlane.start({
        dir: values.dir,
        attached: false,
        nodes: Number(values.nodes),
      });
      const s = cluster.state;
      console.error(
        `control plane ${s.kubernetesVersion} ready at ${s.server} in ${(s.startedInMs / 1000).toFixed(1)}s`,
      );
      console.log(s.kubeconfig);
      return 0;
    }
    case 'down': {
      const cluster = await LocalControlPlane.load(values.dir).catch(() => undefined);
      if (!cluster) {
        console.error(`no control plane recorded in ${values.dir}`);
        return 0;
      }
      await cluster.stop();
      console.error('control plane stopped');
      return 0;
    }
    case 'status': {
      const cluster = await LocalControlPlane.load(values.dir).catch(() => undefined);
      if (!cluster || !cluster.running()) {
        console.error('not running');
        return 1;
      }
      console.log(JSON.stringify(cluster.state, null, 2));
      return 0;
    }
    default:
      console.error('usage: node test/cluster/cli.ts up|down|status|build [--dir DIR] [--nodes N]');
      return 2;
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  },
);
