import { describe, expect, test } from '@jest/globals';
import {
  computeMetadata,
  isValidTag,
  MetadataError,
  normalizeImageName,
  parseFlavor,
  parseTagRules,
  sanitizeTag,
} from '../../../src/core/image/metadata.ts';
import type { GitHubContext, MetadataInput } from '../../../src/core/image/metadata.ts';

const SHA = '860c1904a1ce19322e91ac35af1ab07466440c37';
const NOW = new Date('2020-01-10T00:30:00.000Z');
const IMAGE = 'ghcr.io/octocat/app';

const push = (ref: string, extra: Partial<GitHubContext> = {}): GitHubContext => ({
  eventName: 'push',
  ref,
  sha: SHA,
  repository: 'octocat/Hello-World',
  defaultBranch: 'main',
  ...extra,
});
const pullRequest = (extra: Partial<GitHubContext> = {}): GitHubContext => ({
  eventName: 'pull_request',
  ref: 'refs/pull/7/merge',
  sha: SHA,
  headRef: 'feature/Login_Fix',
  baseRef: 'main',
  prNumber: 7,
  repository: 'octocat/Hello-World',
  defaultBranch: 'main',
  ...extra,
});
const run = (tags: string[], ctx: GitHubContext, extra: Partial<MetadataInput> = {}) =>
  computeMetadata({ images: [IMAGE], tags, now: NOW, ...extra }, ctx);

const ociLabels = (version: string, extra: Record<string, string> = {}) => ({
  'org.opencontainers.image.created': '2020-01-10T00:30:00.000Z',
  'org.opencontainers.image.description': '',
  'org.opencontainers.image.licenses': '',
  'org.opencontainers.image.revision': SHA,
  'org.opencontainers.image.source': 'https://github.com/octocat/Hello-World',
  'org.opencontainers.image.title': 'Hello-World',
  'org.opencontainers.image.url': 'https://github.com/octocat/Hello-World',
  'org.opencontainers.image.version': version,
  ...extra,
});

describe('push to a branch', () => {
  test('default rules on the default branch: the branch name, no latest (latest=auto only follows tags)', () => {
    const meta = computeMetadata(
      { images: ['GHCR.io/Octocat/App'], tags: [], now: NOW },
      push('refs/heads/main'),
    );
    expect(meta.version).toBe('main');
    expect(meta.tags).toEqual(['ghcr.io/octocat/app:main']);
    expect(meta.tagNames).toEqual(['main']);
    expect(meta.labels).toEqual(ociLabels('main'));
    expect(meta.warnings).toEqual([]);
  });

  test('edge, branch, sha and latest via {{is_default_branch}}, ordered by priority', () => {
    const meta = run(
      [
        'type=sha',
        'type=raw,value=latest,enable={{is_default_branch}}',
        'type=ref,event=branch',
        'type=edge',
      ],
      push('refs/heads/main'),
    );
    expect(meta.version).toBe('edge');
    expect(meta.tagNames).toEqual(['edge', 'main', 'latest', 'sha-860c190']);
    expect(meta.tags).toEqual([`${IMAGE}:edge`, `${IMAGE}:main`, `${IMAGE}:latest`, `${IMAGE}:sha-860c190`]);
  });

  test('another branch: sanitized name, no edge and no latest', () => {
    const meta = run(
      ['type=ref,event=branch', 'type=edge', 'type=raw,value=latest,enable={{is_default_branch}}'],
      push('refs/heads/feature/new-UI'),
    );
    expect(meta.tagNames).toEqual(['feature-new-UI']);
    expect(meta.version).toBe('feature-new-UI');
  });

  test('edge follows branch= over the default branch', () => {
    expect(run(['type=edge,branch=develop'], push('refs/heads/develop')).tagNames).toEqual(['edge']);
    expect(run(['type=edge,branch=develop'], push('refs/heads/main')).tagNames).toEqual([]);
  });

  test('edge without a known default branch yields nothing and says why', () => {
    const meta = run(['type=edge'], push('refs/heads/main', { defaultBranch: undefined }));
    expect(meta.tags).toEqual([]);
    expect(meta.warnings).toEqual([
      'tag rule "type=edge": the default branch is unknown; set branch= or pass defaultBranch',
      'no image tag was generated; check the tag rules',
    ]);
  });

  test('flavor latest=true adds latest on a branch; a raw latest is not repeated', () => {
    const meta = run(['type=ref,event=branch', 'type=raw,value=latest'], push('refs/heads/main'), {
      flavor: ['latest=true'],
    });
    expect(meta.tagNames).toEqual(['main', 'latest']);
  });

  test('sha: short by default, format=long, none without a sha', () => {
    expect(run(['type=sha'], push('refs/heads/main')).tagNames).toEqual(['sha-860c190']);
    expect(run(['type=sha,format=long,prefix='], push('refs/heads/main')).tagNames).toEqual([SHA]);
    expect(run(['type=sha'], push('refs/heads/main', { sha: '' })).tagNames).toEqual([]);
  });

  test('global expressions in values', () => {
    const meta = run(
      ["type=raw,value={{branch}}-{{sha}}-{{date 'YYYYMMDD'}}", 'type=raw,value=tag-{{tag}}x'],
      push('refs/heads/release/1.x'),
    );
    expect(meta.tagNames).toEqual(['release-1.x-860c190-20200110', 'tag-x']);
  });

  test('a branch name that sanitizes to an invalid tag is an error naming it', () => {
    expect(() => run(['type=ref,event=branch'], push('refs/heads/#123-fix'))).toThrow(
      'tag rule "type=ref,event=branch" produced "-123-fix", which is not a valid image tag',
    );
  });
});

describe('tag push', () => {
  const semverRules = [
    'type=ref,event=branch',
    'type=semver,pattern={{version}}',
    'type=semver,pattern={{major}}.{{minor}}',
    'type=semver,pattern={{major}}',
    'type=sha',
  ];

  test('v1.2.3: 1.2.3, 1.2, 1, sha, then latest, for each image', () => {
    const meta = computeMetadata(
      { images: [IMAGE, 'docker.io/Octocat/App'], tags: semverRules, now: NOW },
      push('refs/tags/v1.2.3'),
    );
    expect(meta.version).toBe('1.2.3');
    expect(meta.tagNames).toEqual(['1.2.3', '1.2', '1', 'sha-860c190', 'latest']);
    expect(meta.tags).toEqual([
      `${IMAGE}:1.2.3`,
      `${IMAGE}:1.2`,
      `${IMAGE}:1`,
      `${IMAGE}:sha-860c190`,
      `${IMAGE}:latest`,
      'docker.io/octocat/app:1.2.3',
      'docker.io/octocat/app:1.2',
      'docker.io/octocat/app:1',
      'docker.io/octocat/app:sha-860c190',
      'docker.io/octocat/app:latest',
    ]);
    expect(meta.labels['org.opencontainers.image.version']).toBe('1.2.3');
  });

  test('prerelease v2.0.0-rc.1: only the full version, no major/minor, no latest', () => {
    const meta = run(semverRules, push('refs/tags/v2.0.0-rc.1'));
    expect(meta.tagNames).toEqual(['2.0.0-rc.1', 'sha-860c190']);
    expect(meta.version).toBe('2.0.0-rc.1');
  });

  test('prerelease keeps a pattern that is exactly {{raw}}, and nothing else', () => {
    const meta = run(
      ['type=semver,pattern={{ raw }}', 'type=semver,pattern=v{{major}}', 'type=semver,pattern={{patch}}'],
      push('refs/tags/v2.0.8-beta.67'),
    );
    expect(meta.tagNames).toEqual(['v2.0.8-beta.67', '2.0.8-beta.67']);
  });

  test('semver patterns: {{raw}}, v{{major}}, {{minor}}, {{patch}}; build metadata is not in {{version}}', () => {
    const meta = run(
      [
        'type=semver,pattern={{version}}',
        'type=semver,pattern={{raw}}',
        'type=semver,pattern=v{{major}}',
        'type=semver,pattern={{minor}}',
        'type=semver,pattern={{patch}}',
      ],
      push('refs/tags/v1.2.3+build.5'),
    );
    expect(meta.tagNames).toEqual(['1.2.3', 'v1.2.3-build.5', 'v1', '2', '3', 'latest']);
  });

  test('type=ref,event=tag gives the tag name and latest, even for a prerelease', () => {
    expect(run(['type=ref,event=tag'], push('refs/tags/v2.0.8-beta.67')).tagNames).toEqual([
      'v2.0.8-beta.67',
      'latest',
    ]);
  });

  test('latest=auto follows the highest-priority rule that produced a tag', () => {
    const meta = run(
      ['type=semver,pattern={{version}}', 'type=raw,value=release,priority=1000'],
      push('refs/tags/v1.2.3'),
    );
    expect(meta.tagNames).toEqual(['release', '1.2.3']);
  });

  test('latest=false removes latest; onlatest puts the flavor prefix and suffix on it', () => {
    expect(
      run(['type=semver,pattern={{version}}'], push('refs/tags/v1.2.3'), { flavor: ['latest=false'] })
        .tagNames,
    ).toEqual(['1.2.3']);
    const meta = run(['type=semver,pattern={{version}}'], push('refs/tags/v1.2.3'), {
      flavor: ['prefix=foo-,onlatest=true', 'suffix=-dev'],
    });
    expect(meta.tagNames).toEqual(['foo-1.2.3-dev', 'foo-latest']);
  });

  test('semver on a branch push does nothing; with value= it does, and match= picks group 1', () => {
    expect(run(['type=semver,pattern={{version}}'], push('refs/heads/main')).tagNames).toEqual([]);
    expect(run(['type=semver,pattern={{version}},value=v3.1.4'], push('refs/heads/main')).tagNames).toEqual([
      '3.1.4',
      'latest',
    ]);
    const matched = run(
      ['type=semver,pattern={{major}}.{{minor}},value=p1/v1.0.0,"match=v(\\d.\\d.\\d)$"'],
      push('refs/heads/main'),
    );
    expect(matched.tagNames).toEqual(['1.0', 'latest']);
  });

  test('a tag that is not semver is skipped with a warning', () => {
    const meta = run(['type=semver,pattern={{version}}', 'type=ref,event=tag'], push('refs/tags/release-1'));
    expect(meta.tagNames).toEqual(['release-1', 'latest']);
    expect(meta.warnings).toEqual([
      'tag rule "type=semver,pattern={{version}}": "release-1" is not a valid semver (https://semver.org/)',
    ]);
  });
});

describe('pull requests', () => {
  test('#7: pr-7 and the sanitized source branch (event=pr-branch), never the branch rule', () => {
    const meta = run(
      ['type=ref,event=branch', 'type=ref,event=pr', 'type=ref,event=pr-branch', 'type=sha'],
      pullRequest(),
    );
    expect(meta.tagNames).toEqual(['pr-7', 'pr-feature-Login_Fix', 'sha-860c190']);
    expect(meta.tagNames.every(isValidTag)).toBe(true);
    expect(meta.version).toBe('pr-7');
  });

  test('pr-branch without its default prefix; {{base_ref}} is the target branch', () => {
    const meta = run(['type=ref,event=pr-branch,prefix=', 'type=raw,value=into-{{base_ref}}'], pullRequest());
    expect(meta.tagNames).toEqual(['feature-Login_Fix', 'into-main']);
  });

  test('pull_request_target is read as refs/pull/N/merge, not as the base branch', () => {
    const meta = run(
      ['type=ref,event=branch', 'type=ref,event=pr'],
      pullRequest({ eventName: 'pull_request_target', ref: 'refs/heads/main' }),
    );
    expect(meta.tagNames).toEqual(['pr-7']);
  });

  test('the default rules give pr-7 and no latest', () => {
    expect(run([], pullRequest()).tags).toEqual([`${IMAGE}:pr-7`]);
  });
});

describe('schedule', () => {
  const schedule = push('refs/heads/main', { eventName: 'schedule' });

  test('nightly and date patterns, with a time zone', () => {
    const meta = run(
      [
        'type=schedule',
        "type=schedule,pattern={{date 'YYYYMMDD'}}",
        "type=schedule,pattern={{date 'YYYYMMDD-HHmmss' tz='Asia/Tokyo'}}",
      ],
      schedule,
    );
    expect(meta.tagNames).toEqual(['nightly', '20200110', '20200110-093000']);
  });

  test('default rules on a schedule: nightly, then the branch', () => {
    expect(run([], schedule).tagNames).toEqual(['nightly', 'main']);
  });

  test('schedule rules do nothing on other events', () => {
    expect(run(['type=schedule', 'type=raw,value=x'], push('refs/heads/main')).tagNames).toEqual(['x']);
  });

  test('{{is_default_branch}} is true on schedule events whatever the branch', () => {
    const meta = run(
      ['type=raw,value=latest,enable={{is_default_branch}}'],
      push('refs/heads/other', { eventName: 'schedule' }),
    );
    expect(meta.tagNames).toEqual(['latest']);
  });
});

describe('raw, prefix, suffix, priority, enable', () => {
  test('priority order, tag prefix/suffix replacing the flavor ones', () => {
    const meta = run(
      [
        'type=raw,value=a',
        'type=raw,value=b,priority=1000',
        'type=sha,priority=950,prefix=git-,suffix=-x',
        'type=ref,event=branch,prefix=br-',
        'c',
      ],
      push('refs/heads/main'),
      { flavor: ['prefix=p-', 'suffix=-s'] },
    );
    expect(meta.tagNames).toEqual(['p-b-s', 'git-860c190-x', 'br-main-s', 'p-a-s', 'p-c-s']);
    expect(meta.version).toBe('p-b-s');
  });

  test('equal priorities keep their input order', () => {
    expect(
      run(['type=raw,value=z', 'type=raw,value=y', 'type=raw,value=x'], push('refs/heads/main')).tagNames,
    ).toEqual(['z', 'y', 'x']);
  });

  test('enable=false and enable={{is_not_default_branch}} skip a rule', () => {
    const meta = run(
      [
        'type=raw,value=skipped,enable=false',
        'type=raw,value=not-default,enable={{is_not_default_branch}}',
        'kept',
      ],
      push('refs/heads/main'),
    );
    expect(meta.tagNames).toEqual(['kept']);
  });

  test('an enable expression that is not a boolean is an error', () => {
    expect(() => run(['type=raw,value=x,enable={{branch}}'], push('refs/heads/main'))).toThrow(
      'tag rule "type=raw,value=x,enable={{branch}}": enable= evaluated to "main"; expected true or false',
    );
  });

  test('a resulting tag that is too long or starts with a dash is an error', () => {
    expect(() => run([`type=raw,value=${'x'.repeat(129)}`], push('refs/heads/main'))).toThrow(
      'it has 129 characters, at most 128 are allowed',
    );
    expect(() => run(['type=raw,value=.hidden'], push('refs/heads/main'))).toThrow(
      'tag rule "type=raw,value=.hidden" produced ".hidden", which is not a valid image tag',
    );
  });

  test('without images, tags are the bare tag names', () => {
    const meta = computeMetadata(
      { images: [], tags: ['type=raw,value=x'], now: NOW },
      push('refs/heads/main'),
    );
    expect(meta.tags).toEqual(['x']);
  });

  test('images with enable=false are left out', () => {
    const meta = computeMetadata(
      {
        images: ['name=docker.io/acme/app,enable=false', `name=${IMAGE}`],
        tags: ['type=raw,value=x'],
        now: NOW,
      },
      push('refs/heads/main'),
    );
    expect(meta.tags).toEqual([`${IMAGE}:x`]);
  });
});

describe('type=match', () => {
  test.each([
    ['v2.0.8-beta.67', 'type=match,pattern=v(\\d.\\d),group=1', ['2.0', 'latest']],
    ['v1.2.3', 'type=match,pattern=\\d.\\d.\\d', ['1.2.3', 'latest']],
    ['20200110-RC2', 'type=match,pattern=\\d+', ['20200110', 'latest']],
    ['V42', 'type=match,"pattern=/^v(\\d+)$/i",group=1', ['42', 'latest']],
    ['app-1.4', 'type=match,"pattern=^(?<name>[a-z]+)-(\\d+)\\.(\\d+)$",group=3', ['4', 'latest']],
  ])('tag %s with %s', (tag, rule, expected) => {
    expect(run([rule], push(`refs/tags/${tag}`)).tagNames).toEqual(expected);
  });

  test('value= on a branch push, with an expression', () => {
    const meta = run(['type=match,pattern=(\\d+)$,group=1,value={{branch}}'], push('refs/heads/release/17'));
    expect(meta.tagNames).toEqual(['17', 'latest']);
  });

  test('no match: nothing, and a warning', () => {
    const meta = run(['type=match,pattern=^v(\\d+)$,group=1'], push('refs/tags/nightly'));
    expect(meta.tagNames).toEqual([]);
    expect(meta.warnings[0]).toBe(
      'tag rule "type=match,pattern=^v(\\d+)$,group=1": pattern "^v(\\d+)$" does not match "nightly"',
    );
  });

  test('a group that did not take part in the match: nothing, and a warning', () => {
    const meta = run(['type=match,pattern=(a)|(b),group=1'], push('refs/tags/b'));
    expect(meta.tagNames).toEqual([]);
    expect(meta.warnings[0]).toBe(
      'tag rule "type=match,pattern=(a)|(b),group=1": group 1 did not take part in the match on "b"',
    );
  });

  test.each([
    ['^(a|a)*$', `${'a'.repeat(50_000)}!`],
    ['(a+)+$', `${'a'.repeat(50_000)}!`],
    ['^(\\w+\\s?)*$', `${'word '.repeat(10_000)}!`],
  ])(
    'catastrophic pattern %s on a long value finishes (RE2; a backtracking engine would never)',
    (pattern, value) => {
      const meta = run([`type=match,pattern=${pattern},value=${value}`], push('refs/heads/main'));
      expect(meta.tags).toEqual([]);
      expect(meta.warnings[0]).toMatch(/does not match/);
    },
  );

  test('semver match= is RE2 too', () => {
    const meta = run(
      [`type=semver,pattern={{version}},value=${'a'.repeat(50_000)}!,match=^(a|a)*(x)$`],
      push('refs/heads/main'),
    );
    expect(meta.tags).toEqual([]);
  });
});

describe('labels and annotations', () => {
  test('OCI labels from the context and the inputs, user lines override, keys sorted', () => {
    const meta = computeMetadata(
      {
        images: [IMAGE],
        tags: ['type=ref,event=branch'],
        now: NOW,
        description: 'Says hello',
        license: 'Apache-2.0',
        url: 'https://hello.example',
        labels: [
          'org.opencontainers.image.title=Custom Title',
          'maintainer=team-{{branch}}@example.com',
          'empty=',
        ],
        annotations: ['org.opencontainers.image.description=Annotated'],
      },
      push('refs/heads/main', { serverUrl: 'https://ghe.example/' }),
    );
    expect(meta.labels).toEqual({
      empty: '',
      maintainer: 'team-main@example.com',
      'org.opencontainers.image.created': '2020-01-10T00:30:00.000Z',
      'org.opencontainers.image.description': 'Says hello',
      'org.opencontainers.image.licenses': 'Apache-2.0',
      'org.opencontainers.image.revision': SHA,
      'org.opencontainers.image.source': 'https://ghe.example/octocat/Hello-World',
      'org.opencontainers.image.title': 'Custom Title',
      'org.opencontainers.image.url': 'https://hello.example',
      'org.opencontainers.image.version': 'main',
    });
    expect(Object.keys(meta.labels)).toEqual([
      'empty',
      'maintainer',
      'org.opencontainers.image.created',
      'org.opencontainers.image.description',
      'org.opencontainers.image.licenses',
      'org.opencontainers.image.revision',
      'org.opencontainers.image.source',
      'org.opencontainers.image.title',
      'org.opencontainers.image.url',
      'org.opencontainers.image.version',
    ]);
    expect(meta.annotations['org.opencontainers.image.description']).toBe('Annotated');
    expect(meta.annotations['org.opencontainers.image.title']).toBe('Hello-World');
  });

  test('created is the commit time when no `now` is given', () => {
    const meta = computeMetadata(
      { images: [IMAGE], tags: ['type=sha'] },
      push('refs/heads/main', { commitTime: new Date('2019-12-31T23:59:59.000Z') }),
    );
    expect(meta.labels['org.opencontainers.image.created']).toBe('2019-12-31T23:59:59.000Z');
  });

  test('json output in metadata-action shape', () => {
    const meta = run(['type=ref,event=branch'], push('refs/heads/main'));
    expect(meta.json).toEqual({
      tags: [`${IMAGE}:main`],
      'tag-names': ['main'],
      labels: ociLabels('main'),
      annotations: Object.entries(ociLabels('main')).map(([k, v]) => `manifest:${k}=${v}`),
    });
  });

  test('date formats: moment tokens, time zones, commit_date', () => {
    const meta = computeMetadata(
      {
        images: [],
        tags: ['x'],
        now: new Date('2020-01-10T15:25:50.042Z'),
        labels: [
          "a={{date 'dddd, MMMM Do YYYY, h:mm:ss a'}}",
          "b={{commit_date 'YYYY-MM-DDTHH:mm:ss.SSS[Z]'}}",
          "c={{date 'YYYY-MM-DD HH:mm Z' tz='America/New_York'}}",
          "d={{date 'GGGG-[W]WW-E DDDD Q X'}}",
          "e={{date 'ddd D MMM YY, hh A, kk ZZ'}}",
        ],
      },
      push('refs/heads/main', { commitTime: new Date('2020-01-09T22:10:05.123Z') }),
    );
    expect([
      meta.labels['a'],
      meta.labels['b'],
      meta.labels['c'],
      meta.labels['d'],
      meta.labels['e'],
    ]).toEqual([
      'Friday, January 10th 2020, 3:25:50 pm',
      '2020-01-09T22:10:05.123Z',
      '2020-01-10 10:25 -05:00',
      '2020-W02-5 010 1 1578669950',
      'Fri 10 Jan 20, 03 PM, 15 +0000',
    ]);
  });

  test('ISO week years at a year boundary', () => {
    const meta = computeMetadata(
      { images: [], tags: ["type=raw,value={{date 'GGGG-[W]WW-E'}}"], now: new Date('2021-01-03T12:00:00Z') },
      push('refs/heads/main'),
    );
    expect(meta.tagNames).toEqual(['2020-W53-7']);
  });

  test('a label line without = is an error', () => {
    expect(() => run(['x'], push('refs/heads/main'), { labels: ['just-a-key'] })).toThrow(
      'labels: "just-a-key" is not key=value',
    );
  });
});

describe('parseTagRules', () => {
  test('no lines: the default rules, sorted by priority, with every default attribute', () => {
    expect(parseTagRules(['# only a comment', '   '])).toEqual([
      {
        type: 'schedule',
        attrs: { pattern: 'nightly', enable: 'true', priority: '1000' },
        priority: 1000,
        source: 'type=schedule',
      },
      {
        type: 'ref',
        attrs: { event: 'branch', enable: 'true', priority: '600' },
        priority: 600,
        source: 'type=ref,event=branch',
      },
      {
        type: 'ref',
        attrs: { event: 'tag', enable: 'true', priority: '600' },
        priority: 600,
        source: 'type=ref,event=tag',
      },
      {
        type: 'ref',
        attrs: { event: 'pr', prefix: 'pr-', enable: 'true', priority: '600' },
        priority: 600,
        source: 'type=ref,event=pr',
      },
    ]);
  });

  test('quoted fields, bare values, case-insensitive keys, spaces', () => {
    expect(
      parseTagRules([
        'type=match, "pattern=^v(\\d+),(\\d+)$" ,GROUP=2',
        'bare-tag',
        'type=sha , format=long',
      ]),
    ).toEqual([
      {
        type: 'match',
        attrs: { pattern: '^v(\\d+),(\\d+)$', group: '2', value: '', enable: 'true', priority: '800' },
        priority: 800,
        source: 'type=match, "pattern=^v(\\d+),(\\d+)$" ,GROUP=2',
      },
      {
        type: 'raw',
        attrs: { value: 'bare-tag', enable: 'true', priority: '200' },
        priority: 200,
        source: 'bare-tag',
      },
      {
        type: 'sha',
        attrs: { format: 'long', prefix: 'sha-', enable: 'true', priority: '100' },
        priority: 100,
        source: 'type=sha , format=long',
      },
    ]);
  });

  test.each([
    ['type=foo', 'unknown type "foo" (known: schedule, semver, match, edge, ref, raw, sha)'],
    ['type=pep440,pattern={{version}}', 'type=pep440 is not supported'],
    ['type=ref', 'type=ref needs event='],
    ['type=ref,event=push', 'unknown event "push" (known: branch, tag, pr, pr-branch)'],
    ['type=raw', 'type=raw needs value='],
    ['type=semver', 'type=semver needs pattern='],
    ['type=semver,pattern={{foo}}', 'unknown expression {{foo}}'],
    ['type=semver,pattern={{version}},match=v\\d', 'match= needs a capture group'],
    ['type=sha,format=medium', 'format= must be short or long, not "medium"'],
    ['type=sha,lenght=12', 'lenght= is not an attribute of type=sha'],
    ['type=sha,foo', 'the bare value "foo" is not an attribute of type=sha'],
    ['type=match,pattern=v(.*),group=foo', 'group= must be a group number, not "foo"'],
    ['type=match,pattern=v(.*),group=2', 'group 2 does not exist; the pattern has 1 capture group(s)'],
    ['type=match,pattern=(a)\\1', 'invalid regular expression "(a)\\1"'],
    ['type=match,pattern=v(?=1)', 'invalid regular expression "v(?=1)"'],
    ['type=match,"pattern=/a(b)/g"', 'regex flag "g" is not supported'],
    ['type=raw,value=x,priority=high', 'priority= must be an integer, not "high"'],
    ['type=raw,value=x,enable=yes', 'enable= must be true, false or an expression, not "yes"'],
    ['type=raw,value=x,value=y', 'value (or a bare value) given twice'],
    ['type=raw,type=sha', 'type= given twice'],
    ['type=schedule,pattern={{date}}', "{{date}} takes one quoted format, e.g. {{date 'YYYYMMDD'}}"],
    ["type=schedule,pattern={{date 'YYYY' tz='Mars/Base'}}", 'unknown time zone "Mars/Base"'],
    ["type=schedule,pattern={{date 'YYYY' zone='UTC'}}", 'unknown attribute zone= (only tz= is supported)'],
    ["type=raw,value={{date 'LL'}}", 'the moment.js token starting with "L" is not supported'],
    ['type=raw,value={{branch', 'unclosed "{{"'],
    ['type=raw,value={{#if x}}y{{/if}}', 'unsupported Handlebars syntax'],
    ['type=raw,value={{branch x}}', 'unexpected "x"; arguments must be quoted strings'],
    ['type=raw,value=a"b', 'a quote inside a field'],
    ['type=raw,"value=abc', 'unterminated quote'],
  ])('%s', (line, message) => {
    expect(() => parseTagRules([line])).toThrow(MetadataError);
    expect(() => parseTagRules([line])).toThrow(`tag rule "${line.replace(/"/g, '\\"')}"`);
    expect(() => parseTagRules([line])).toThrow(message);
  });

  test('computeMetadata reports rule errors too', () => {
    expect(() => run(['type=nope'], push('refs/heads/main'))).toThrow(
      /tag rule "type=nope": unknown type "nope"/,
    );
  });
});

describe('parseFlavor', () => {
  test('defaults and a full flavor', () => {
    expect(parseFlavor([])).toEqual({
      latest: 'auto',
      prefix: '',
      prefixLatest: false,
      suffix: '',
      suffixLatest: false,
    });
    expect(parseFlavor(['latest=false', 'prefix=app-,onlatest=true', 'suffix=-alpine'])).toEqual({
      latest: 'false',
      prefix: 'app-',
      prefixLatest: true,
      suffix: '-alpine',
      suffixLatest: false,
    });
  });

  test.each([
    ['latest=sometimes', 'latest= must be auto, true or false, not "sometimes"'],
    ['colour=blue', 'unknown flavor "colour"'],
    ['onlatest=true', 'onlatest= must follow prefix= or suffix= on the same line'],
    ['prefix=a,onlatest=yes', 'onlatest= must be true or false, not "yes"'],
    ['latest', '"latest" is not key=value'],
  ])('%s', (line, message) => {
    expect(() => parseFlavor([line])).toThrow(MetadataError);
    expect(() => parseFlavor([line])).toThrow(message);
  });
});

describe('image names', () => {
  test.each([
    ['GHCR.io/Acme/My-App', 'ghcr.io/acme/my-app'],
    ['localhost:5000/app', 'localhost:5000/app'],
    ['[::1]:5000/team/app', '[::1]:5000/team/app'],
    ['registry.example.com:443/a/b__c/d.e', 'registry.example.com:443/a/b__c/d.e'],
    ['nginx', 'nginx'],
  ])('%s -> %s', (name, expected) => {
    expect(normalizeImageName(name)).toBe(expected);
  });

  test.each([
    ['invalid image name "ghcr.io/acme/app:1.0": it must not contain a tag', 'ghcr.io/acme/app:1.0'],
    ['it must not contain a digest', `acme/app@sha256:${'a'.repeat(64)}`],
    ['path component "-app" must be lowercase letters and digits', 'ghcr.io/acme/-app'],
    ['path component "" must be', 'acme//app'],
    ['"my_registry.io:port" is not a valid registry host[:port]', 'my_registry.io:port/app'],
    ['path component "my app"', 'acme/my app'],
    ['it is longer than 255 characters', 'x'.repeat(256)],
  ])('rejects with: %s', (message, name) => {
    expect(() => normalizeImageName(name)).toThrow(MetadataError);
    expect(() => normalizeImageName(name)).toThrow(message);
    expect(() => computeMetadata({ images: [name], tags: ['x'] }, push('refs/heads/main'))).toThrow(message);
  });

  test.each([
    ['name=ghcr.io/a/b,enable=maybe', 'images: enable must be true or false'],
    ['name=ghcr.io/a/b,size=2', 'images: unknown attribute "size"'],
    ['enable=true', 'images: no image name'],
  ])('image line %s is rejected', (line, message) => {
    expect(() => computeMetadata({ images: [line], tags: ['x'] }, push('refs/heads/main'))).toThrow(message);
  });
});

describe('sanitizeTag', () => {
  test.each([
    ['feature/Login_Fix', 'feature-Login_Fix'],
    ['a//b', 'a-b'],
    ['ünïcode', '-n-code'],
    ['v1.2.3+build.5', 'v1.2.3-build.5'],
    ['keep_.-these', 'keep_.-these'],
    ['a b\tc', 'a-b-c'],
  ])('%s -> %s', (input, expected) => {
    expect(sanitizeTag(input)).toBe(expected);
  });

  test.each([
    ['main', true],
    ['_x', true],
    ['-x', false],
    ['.x', false],
    ['', false],
    ['a'.repeat(128), true],
    ['a'.repeat(129), false],
  ])('isValidTag case %#', (tag, valid) => {
    expect(isValidTag(tag)).toBe(valid);
  });
});
