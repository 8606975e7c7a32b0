// kube-actions build: the build action's engine on the command line.
import { parseArgs } from 'node:util';
import { buildImage, resolveSourceDateEpoch } from '../core/image/build.ts';
import { parseSecrets } from '../core/image/buildkit.ts';
import { parseLayerSpec } from '../core/image/layer.ts';
import { parsePlatform } from '../core/image/platform.ts';
import { parseReference } from '../core/image/reference.ts';

export const BUILD_USAGE = `usage: kube-actions build IMAGE... [options]

Builds an image and pushes it to each IMAGE (a name without a tag) by digest, then tags it. With
--layer it layers files onto --base without any daemon; otherwise it builds the Dockerfile in
--context through BuildKit (buildctl with --buildkit-addr or $BUILDKIT_HOST, else docker buildx).
Credentials come from ~/.docker/config.json (or $DOCKER_CONFIG), or --username with
--password-stdin. Prints the image by digest.

options:
  -t, --tag TAG              tag to put on the image (repeatable)
      --platform LIST        os/arch[,os/arch...]
      --label KEY=VALUE      image label (repeatable)
      --annotation KEY=VALUE manifest annotation (repeatable)
      --no-push              build only
      --insecure-registry R  reach R over plain HTTP (repeatable; loopback always is)
      --username USER        with --password-stdin: credentials for the first image's registry
      --password-stdin       read the password from stdin
      --json                 print the result as JSON

  layers (no daemon):
      --layer SRC:DEST       one layer per SRC, in order (repeatable)
      --base REF             base image (default scratch)
      --entrypoint JSON      entrypoint as a JSON array
      --cmd JSON             command as a JSON array
      --env KEY=VALUE        (repeatable)
      --workdir DIR
      --user USER
      --port PORT[/PROTO]    exposed port (repeatable)
      --source-date-epoch S  file mtimes and creation time (default $SOURCE_DATE_EPOCH or HEAD's time)

  Dockerfile (BuildKit):
      --context DIR          build context (default .)
  -f, --file PATH            Dockerfile, relative to the context
      --target STAGE
      --build-arg NAME=VALUE (repeatable)
      --secret-file ID=PATH  BuildKit secret from a file (repeatable)
      --secret-env ID=VAR    BuildKit secret from an environment variable (repeatable)
      --cache-from SPEC      (repeatable)    --cache-to SPEC (repeatable)
      --output SPEC          extra BuildKit output (repeatable)
      --buildkit-addr ADDR   buildkitd address
`;

function keyValues(lines: string[], flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of lines) {
    const eq = line.indexOf('=');
    if (eq <= 0) throw new Error(`--${flag} "${line}" is not KEY=VALUE`);
    out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

function jsonArgv(value: string | undefined, flag: string): string[] | undefined {
  if (value === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    parsed = undefined;
  }
  if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === 'string')) {
    throw new Error(`--${flag} must be a JSON array of strings, e.g. '["/app/server","--port","8080"]'`);
  }
  return parsed;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

export async function buildCommand(argv: string[]): Promise<number> {
  const many = { type: 'string' as const, multiple: true as const, default: [] as string[] };
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      tag: { ...many, short: 't' },
      platform: { type: 'string' },
      label: many,
      annotation: many,
      'no-push': { type: 'boolean', default: false },
      'insecure-registry': many,
      username: { type: 'string' },
      'password-stdin': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      layer: many,
      base: { type: 'string', default: 'scratch' },
      entrypoint: { type: 'string' },
      cmd: { type: 'string' },
      env: many,
      workdir: { type: 'string' },
      user: { type: 'string' },
      port: many,
      'source-date-epoch': { type: 'string' },
      context: { type: 'string', default: '.' },
      file: { type: 'string', short: 'f' },
      target: { type: 'string' },
      'build-arg': many,
      'secret-file': many,
      'secret-env': many,
      'cache-from': many,
      'cache-to': many,
      output: many,
      'buildkit-addr': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(BUILD_USAGE);
    return 0;
  }
  if (!positionals.length) {
    process.stderr.write(`kube-actions build: give at least one image name\n\n${BUILD_USAGE}`);
    return 2;
  }
  const workspace = process.cwd();
  let login: Parameters<typeof buildImage>[0]['login'];
  if (values['password-stdin']) {
    if (!values.username) throw new Error('--password-stdin needs --username');
    login = {
      registry: parseReference(positionals[0]!).registry,
      credentials: { username: values.username, password: await readStdin() },
    };
  }
  const platforms = values.platform ? values.platform.split(',').map(parsePlatform) : undefined;
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const common = {
    images: positionals,
    tags: values.tag,
    push: !values['no-push'],
    ...(platforms ? { platforms } : {}),
    labels: keyValues(values.label, 'label'),
    annotations: keyValues(values.annotation, 'annotation'),
    ...(login ? { login } : {}),
    insecureRegistries: values['insecure-registry'],
    log,
  };
  const entrypoint = jsonArgv(values.entrypoint, 'entrypoint');
  const cmd = jsonArgv(values.cmd, 'cmd');
  const result = values.layer.length
    ? await buildImage({
        ...common,
        layers: {
          base: values.base,
          layers: values.layer.map((spec) => parseLayerSpec(spec, workspace)),
          config: {
            ...(entrypoint ? { entrypoint } : {}),
            ...(cmd ? { cmd } : {}),
            env: values.env,
            ...(values.workdir !== undefined ? { workdir: values.workdir } : {}),
            ...(values.user !== undefined ? { user: values.user } : {}),
            ports: values.port,
          },
          sourceDateEpoch: await resolveSourceDateEpoch(workspace, values['source-date-epoch']),
        },
      })
    : await buildImage({
        ...common,
        dockerfile: {
          context: values.context,
          ...(values.file ? { file: values.file } : {}),
          ...(values.target ? { target: values.target } : {}),
          buildArgs: values['build-arg'],
          secrets: parseSecrets({ files: values['secret-file'], envs: values['secret-env'] }, workspace),
          cacheFrom: values['cache-from'],
          cacheTo: values['cache-to'],
          outputs: values.output,
          ...(values['buildkit-addr'] ? { address: values['buildkit-addr'] } : {}),
        },
      });
  if (values.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  else process.stdout.write(`${result.images[0] ?? result.digest ?? ''}\n`);
  return 0;
}
