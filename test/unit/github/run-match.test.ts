import { describe, expect, test } from '@jest/globals';
import { decide, matchRuns, shortRef, type RunCandidate } from '../../../src/core/github/run-match.ts';

const SINCE = Date.parse('2026-09-01T12:00:00Z');

function run(id: number, overrides: Partial<RunCandidate> = {}): RunCandidate {
  return {
    id,
    display_title: 'Deploy',
    event: 'workflow_dispatch',
    head_branch: 'main',
    created_at: '2026-09-01T12:00:03Z',
    html_url: `https://github.example/acme/app/actions/runs/${id}`,
    ...overrides,
  };
}

describe('matchRuns', () => {
  const criteria = { createdSinceMs: SINCE, branch: 'main' };

  test('only workflow_dispatch runs on the branch created since the dispatch are candidates', () => {
    const runs = [
      run(1, { created_at: '2026-09-01T11:59:59Z' }),
      run(2, { event: 'push' }),
      run(3, { head_branch: 'feature' }),
      run(4, { created_at: '2026-09-01T12:00:00Z' }),
    ];
    expect(matchRuns(runs, criteria)).toEqual({ kind: 'one', run: runs[3] });
    expect(matchRuns(runs.slice(0, 3), criteria)).toEqual({ kind: 'none' });
  });

  test('two candidates are ambiguous, listed by id', () => {
    expect(matchRuns([run(9), run(7)], criteria)).toEqual({ kind: 'ambiguous', runs: [run(7), run(9)] });
  });

  test('the same run seen twice (the list moved while paging) is one candidate', () => {
    expect(matchRuns([run(5), run(5)], criteria)).toEqual({ kind: 'one', run: run(5) });
  });

  test('with a distinct id, only the run whose title carries it', () => {
    const mine = run(8, { display_title: 'Deploy staging (4b1e0c2a)' });
    const runs = [run(6, { display_title: 'Deploy staging (9f00aa11)' }), mine, run(7)];
    expect(matchRuns(runs, { ...criteria, distinctId: '4b1e0c2a' })).toEqual({ kind: 'one', run: mine });
    expect(matchRuns(runs, { ...criteria, distinctId: 'ffffffff' })).toEqual({ kind: 'none' });
  });
});

describe('decide', () => {
  test('a distinct id identifies the run at the first listing', () => {
    expect(decide({ kind: 'one', run: run(1) }, { byDistinctId: true })).toEqual({
      kind: 'found',
      run: run(1),
    });
  });

  test('without one, a single candidate must still be the only one at the next listing', () => {
    const first = decide({ kind: 'one', run: run(1) }, { byDistinctId: false });
    expect(first).toEqual({ kind: 'keep-looking', pending: 1 });
    expect(decide({ kind: 'one', run: run(1) }, { byDistinctId: false, pending: 1 })).toEqual({
      kind: 'found',
      run: run(1),
    });
  });

  test('a different single candidate starts the confirmation again; a vanished one is dropped', () => {
    expect(decide({ kind: 'one', run: run(2) }, { byDistinctId: false, pending: 1 })).toEqual({
      kind: 'keep-looking',
      pending: 2,
    });
    expect(decide({ kind: 'none' }, { byDistinctId: false, pending: 1 })).toEqual({ kind: 'keep-looking' });
  });

  test('two candidates end the search, even with one pending', () => {
    expect(
      decide({ kind: 'ambiguous', runs: [run(1), run(2)] }, { byDistinctId: false, pending: 1 }),
    ).toEqual({
      kind: 'ambiguous',
      runs: [run(1), run(2)],
    });
  });

  test('shortRef', () => {
    expect([
      shortRef('refs/heads/main'),
      shortRef('refs/tags/v1.2'),
      shortRef('main'),
      shortRef('refs/pull/1/merge'),
    ]).toEqual(['main', 'v1.2', 'main', 'refs/pull/1/merge']);
  });
});
