// The analysis half of progressive delivery: AnalysisTemplates, ClusterAnalysisTemplates and
// AnalysisRuns with Argo Rollouts' semantics. The Rollout controller creates runs with
// createAnalysisRun(), reads their status.phase, and stops them with terminateAnalysisRun().
export * from './types.ts';
export {
  analysisRunSpec,
  createAnalysisRun,
  fetchTemplates,
  getAnalysisRun,
  resolveFieldPath,
  terminateAnalysisRun,
  TemplateError,
  type AnalysisRunSpecOptions,
  type CreateAnalysisRunOptions,
} from './templates.ts';
export { AnalysisRunReconciler, runPhase, type AnalysisRunReconcilerOptions } from './reconciler.ts';
export {
  setupAnalysisController,
  type AnalysisController,
  type AnalysisControllerOptions,
} from './controller.ts';
export { evaluateCondition, evaluateConditions, ExpressionError, parseExpression } from './expression.ts';
