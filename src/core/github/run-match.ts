// Finding the run a dispatch started when the server does not say (GitHub Enterprise Server
// before 3.21 rejects return_run_details). Never a guess: with a unique value in an input that
// the run-name shows, the run whose title carries it; otherwise the workflow_dispatch runs of
// that workflow on that ref created since just before the dispatch, accepted only while there is
// exactly one, seen twice a poll apart. Anything else is reported as ambiguous. Pure.

/** The fields of a workflow run (GitHub's list-workflow-runs items) that matching reads. */
export interface RunCandidate {
  id: number;
  display_title: string;
  event: string;
  head_branch: string | null;
  created_at: string;
  html_url: string;
}

export interface MatchCriteria {
  /** Runs created before this (epoch ms, server time) are not this dispatch's. */
  createdSinceMs: number;
  /** The short branch or tag name the dispatch ran on. */
  branch: string;
  /** The unique value passed in the distinct-id input, shown in the run's title. */
  distinctId?: string;
}

export type MatchOutcome =
  { kind: 'none' } | { kind: 'one'; run: RunCandidate } | { kind: 'ambiguous'; runs: RunCandidate[] };

/** The candidates among `runs` for the dispatch described by `criteria`. */
export function matchRuns(runs: readonly RunCandidate[], criteria: MatchCriteria): MatchOutcome {
  const matching = runs.filter(
    (r) =>
      r.event === 'workflow_dispatch' &&
      r.head_branch === criteria.branch &&
      Date.parse(r.created_at) >= criteria.createdSinceMs &&
      (criteria.distinctId === undefined || r.display_title.includes(criteria.distinctId)),
  );
  // The same run may show on two pages when the list moves while paging.
  const unique = [...new Map(matching.map((r) => [r.id, r])).values()];
  if (unique.length === 0) return { kind: 'none' };
  if (unique.length === 1) return { kind: 'one', run: unique[0]! };
  return { kind: 'ambiguous', runs: unique.sort((a, b) => a.id - b.id) };
}

export type FinderDecision =
  | { kind: 'found'; run: RunCandidate }
  | { kind: 'keep-looking'; pending?: number }
  | { kind: 'ambiguous'; runs: RunCandidate[] };

/**
 * One step of the search: given the previous step's pending candidate and this listing's outcome,
 * whether the run is found. A distinct id identifies the run at once; without one, a single
 * candidate must still be the only one at the next listing (a concurrent dispatch's run may
 * appear a little later), and two candidates at any point end the search as ambiguous.
 */
export function decide(
  outcome: MatchOutcome,
  options: { byDistinctId: boolean; pending?: number },
): FinderDecision {
  if (outcome.kind === 'ambiguous') return { kind: 'ambiguous', runs: outcome.runs };
  if (outcome.kind === 'none') {
    // A candidate that vanished from the list is not trusted either.
    return { kind: 'keep-looking' };
  }
  if (options.byDistinctId || options.pending === outcome.run.id) return { kind: 'found', run: outcome.run };
  return { kind: 'keep-looking', pending: outcome.run.id };
}

/** `refs/heads/main` -> `main`, `refs/tags/v1` -> `v1`: what a run's head_branch shows. */
export function shortRef(ref: string): string {
  return ref.replace(/^refs\/(?:heads|tags)\//, '');
}
