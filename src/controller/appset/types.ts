// The ApplicationSet resource (kube-actions.dev/v1alpha1), with Argo CD's field names: an Argo CD
// ApplicationSet converts by changing its apiVersion (and its template's Applications with it).
// deploy/crds/applicationset.yaml is its schema.
import type { ObjectMeta, ResourceRef } from '../../core/kube/objects.ts';
import { GROUP, type Application } from '../sync/types.ts';

export const APPLICATIONSET: ResourceRef = {
  apiVersion: `${GROUP}/v1alpha1`,
  resource: 'applicationsets',
  namespaced: true,
};

export interface ApplicationSetTemplate {
  metadata?: Pick<ObjectMeta, 'name' | 'namespace' | 'labels' | 'annotations' | 'finalizers'>;
  spec?: Partial<Application['spec']>;
}

export interface GitPathPattern {
  path: string;
  exclude?: boolean;
}

export interface Generator {
  list?: { elements?: unknown[]; template?: ApplicationSetTemplate };
  git?: {
    repoURL: string;
    revision?: string;
    directories?: GitPathPattern[];
    files?: GitPathPattern[];
    /** Prefixes the path parameters (`<prefix>.path...`), as Argo CD's pathParamPrefix. */
    pathParamPrefix?: string;
    /** Extra parameters, `values.<key>`, rendered with the generated ones. */
    values?: Record<string, string>;
    /** How often Git is asked again (default: the controller's poll interval). */
    requeueAfterSeconds?: number;
    template?: ApplicationSetTemplate;
  };
  [other: string]: unknown;
}

export type ApplicationsSyncPolicy = 'create-only' | 'create-update' | 'create-delete' | 'sync';

export interface ApplicationSetCondition {
  type: 'ErrorOccurred' | 'ParametersGenerated' | 'ResourcesUpToDate';
  status: 'True' | 'False';
  reason: string;
  message: string;
  lastTransitionTime?: string;
}

export interface ApplicationSetResourceStatus {
  group: string;
  version: string;
  kind: string;
  name: string;
  namespace: string;
  status?: string;
  health?: { status?: string };
}

export interface ApplicationSet {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta & { name: string; namespace: string };
  spec: {
    generators?: Generator[];
    template?: ApplicationSetTemplate;
    goTemplate?: boolean;
    goTemplateOptions?: string[];
    syncPolicy?: {
      preserveResourcesOnDeletion?: boolean;
      applicationsSync?: ApplicationsSyncPolicy;
    };
    [other: string]: unknown;
  };
  status?: {
    conditions?: ApplicationSetCondition[];
    resources?: ApplicationSetResourceStatus[];
  };
}
