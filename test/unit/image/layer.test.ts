import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { chmod, mkdir, mkdtemp, readdir, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { extract } from 'tar-stream';
import { buildLayer, parseLayerSpec } from '../../../src/core/image/layer.ts';
import { applyConfig } from '../../../src/core/image/layers-builder.ts';

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'layer-test-'));
});
afterAll(() => rm(work, { recursive: true, force: true }));

/** The same tree, written with the given file modes and mtimes. */
async function tree(name: string, mode: number, mtime: Date): Promise<string> {
  const root = join(work, name);
  await mkdir(join(root, 'bin'), { recursive: true });
  await mkdir(join(root, 'static'), { recursive: true });
  await writeFile(join(root, 'static', 'index.html'), '<h1>hi</h1>\n');
  await writeFile(join(root, 'bin', 'server'), '#!/bin/sh\necho hi\n');
  await chmod(join(root, 'bin', 'server'), 0o700);
  await chmod(join(root, 'static', 'index.html'), mode);
  await symlink('bin/server', join(root, 'run'));
  for (const p of ['static/index.html', 'bin/server', 'bin', 'static', '.'])
    await utimes(join(root, p), mtime, mtime);
  return root;
}

async function entries(gz: Buffer) {
  const out: {
    name: string;
    type: string;
    mode: number;
    uid: number;
    gid: number;
    mtime: number;
    linkname?: string;
  }[] = [];
  const ex = extract();
  const done = new Promise<void>((resolve, reject) => {
    ex.on('entry', (h, stream, next) => {
      out.push({
        name: h.name,
        type: h.type ?? '',
        mode: h.mode ?? 0,
        uid: h.uid ?? -1,
        gid: h.gid ?? -1,
        mtime: (h.mtime?.getTime() ?? 0) / 1000,
        ...(h.linkname ? { linkname: h.linkname } : {}),
      });
      stream.on('end', next);
      stream.resume();
    });
    ex.on('finish', resolve);
    ex.on('error', reject);
  });
  ex.end(gunzipSync(gz));
  await done;
  return out;
}

describe('buildLayer', () => {
  test('the same files give the same digest whatever their mtimes and read/write bits', async () => {
    const a = await tree('a', 0o600, new Date('2020-01-01T00:00:00Z'));
    const b = await tree('b', 0o664, new Date('2024-06-01T12:00:00Z'));
    const la = await buildLayer(parseLayerSpec(`${a}:/app`, work), { mtime: 1_700_000_000 });
    const lb = await buildLayer(parseLayerSpec(`${b}:/app`, work), { mtime: 1_700_000_000 });
    expect(la.digest).toBe(lb.digest);
    expect(la.diffId).toBe(lb.diffId);
    const other = await buildLayer(parseLayerSpec(`${a}:/app`, work), { mtime: 1 });
    expect(other.digest).not.toBe(la.digest);
  });

  test('entries are sorted, owned by root, normalised, with the fixed mtime and parents of the destination', async () => {
    const root = await tree('c', 0o640, new Date());
    const layer = await buildLayer(parseLayerSpec(`${root}:/srv/app`, work), { mtime: 1_700_000_000 });
    const list = await entries(layer.data);
    expect(list.map((e) => [e.name, e.type, e.mode.toString(8)])).toEqual([
      ['srv/', 'directory', '755'],
      ['srv/app/', 'directory', '755'],
      ['srv/app/bin/', 'directory', '755'],
      ['srv/app/bin/server', 'file', '755'],
      ['srv/app/run', 'symlink', '777'],
      ['srv/app/static/', 'directory', '755'],
      ['srv/app/static/index.html', 'file', '644'],
    ]);
    expect(new Set(list.map((e) => `${e.uid}:${e.gid}:${e.mtime}`))).toEqual(new Set(['0:0:1700000000']));
    expect(list.find((e) => e.name === 'srv/app/run')?.linkname).toBe('bin/server');
  });

  test('a symlinked source file is layered with its content', async () => {
    await writeFile(join(work, 'real-binary'), 'ELF...');
    await symlink(join(work, 'real-binary'), join(work, 'linked-binary'));
    const list = await entries(
      (
        await buildLayer(parseLayerSpec(`${join(work, 'linked-binary')}:/usr/local/bin/tool`, work), {
          mtime: 0,
        })
      ).data,
    );
    expect(list.at(-1)).toMatchObject({ name: 'usr/local/bin/tool', type: 'file' });
  });

  test('a single file lands at its destination', async () => {
    const file = join(work, 'config.yaml');
    await writeFile(file, 'a: 1\n');
    const list = await entries(
      (await buildLayer(parseLayerSpec(`${file}:/etc/app/config.yaml`, work), { mtime: 0 })).data,
    );
    expect(list.map((e) => e.name)).toEqual(['etc/', 'etc/app/', 'etc/app/config.yaml']);
  });

  test('a platform prefix makes a per-platform layer; a .tar is appended as it is', async () => {
    expect(parseLayerSpec('linux/arm64=out/arm64/node:/usr/local/bin/node', '/ws')).toEqual({
      source: '/ws/out/arm64/node',
      destination: '/usr/local/bin/node',
      platform: { os: 'linux', architecture: 'arm64' },
    });
    expect(parseLayerSpec('rootfs.tar', '/ws')).toEqual({ source: '/ws/rootfs.tar', destination: '/' });
    expect(() => parseLayerSpec('rootfs.tar:/opt', '/ws')).toThrow(/appended at the root/);
    const dir = await tree('for-tar', 0o644, new Date());
    // Big enough to span several of the 1 MiB pieces gzip works in.
    await writeFile(join(dir, 'big.bin'), Buffer.alloc(3 * 1024 * 1024 + 17, 7));
    const fromDir = await buildLayer(parseLayerSpec(`${dir}:/x`, work), { mtime: 5 });
    const tarFile = join(work, 'layer.tar');
    await writeFile(tarFile, gunzipSync(fromDir.data));
    const fromTar = await buildLayer(parseLayerSpec(tarFile, work), { mtime: 99 });
    expect(fromTar.diffId).toBe(fromDir.diffId);
    // Compressed while read or compressed whole, the same pieces give the same blob.
    expect(fromTar.digest).toBe(fromDir.digest);
  });

  test('the layer cache returns the same blob, and a torn cache file is ignored', async () => {
    const dir = await tree('cached', 0o644, new Date());
    const cacheDir = join(work, 'layer-cache');
    const spec = parseLayerSpec(`${dir}:/x`, work);
    const first = await buildLayer(spec, { mtime: 1, cacheDir });
    const files = await readdir(cacheDir);
    expect(files).toEqual([`${first.diffId.slice(7)}-${first.digest.slice(7)}`]);
    const second = await buildLayer(spec, { mtime: 1, cacheDir });
    expect(second.digest).toBe(first.digest);
    // A torn write: the name promises a digest the bytes no longer have.
    await writeFile(join(cacheDir, files[0]!), first.data.subarray(0, 10));
    const third = await buildLayer(spec, { mtime: 1, cacheDir });
    expect(third.digest).toBe(first.digest);
    expect(third.data.equals(first.data)).toBe(true);
  });

  test('bad specs are refused clearly', async () => {
    expect(() => parseLayerSpec('dist:relative/path', work)).toThrow(/must be an absolute path/);
    expect(() => parseLayerSpec('dist:/a/../etc', work)).toThrow(/may not contain/);
    await expect(buildLayer(parseLayerSpec('missing:/x', work), { mtime: 0 })).rejects.toThrow(
      /does not exist/,
    );
  });
});

describe('applyConfig', () => {
  const base = {
    os: 'linux',
    architecture: 'amd64',
    config: { Env: ['PATH=/bin', 'A=1'], Cmd: ['sh'], Labels: { keep: 'yes' } },
    rootfs: { type: 'layers' as const, diff_ids: ['sha256:base'] },
    history: [{ created_by: 'base' }],
  };
  const layer = {
    data: Buffer.alloc(0),
    digest: 'sha256:l',
    diffId: 'sha256:d',
    size: 0,
    description: 'app -> /app',
    destination: '/app',
  };

  test('overrides as docker does: env replaced by key, a new entrypoint resets the base cmd, ports and labels merged', () => {
    const config = applyConfig(
      base,
      {
        entrypoint: ['/app/server'],
        env: ['A=2', 'B=3'],
        ports: ['8080', '53/udp'],
        labels: { v: '1' },
        user: '65532',
      },
      [layer],
      '2023-11-14T22:13:20.000Z',
    );
    expect(config.config).toEqual({
      Env: ['PATH=/bin', 'A=2', 'B=3'],
      Entrypoint: ['/app/server'],
      Cmd: null,
      Labels: { keep: 'yes', v: '1' },
      ExposedPorts: { '8080/tcp': {}, '53/udp': {} },
      User: '65532',
    });
    expect(config.rootfs?.diff_ids).toEqual(['sha256:base', 'sha256:d']);
    expect(config.history).toHaveLength(2);
    expect(config.created).toBe('2023-11-14T22:13:20.000Z');
  });

  test('bad env and ports are refused', () => {
    expect(() => applyConfig(base, { env: ['NOVALUE'] }, [], '')).toThrow(/KEY=VALUE/);
    expect(() => applyConfig(base, { ports: ['99999'] }, [], '')).toThrow(/port "99999"/);
  });
});
