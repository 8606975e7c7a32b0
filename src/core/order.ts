// One string order for everything the project sorts: by UTF-16 code unit, as Go compares strings
// (for the ASCII of Kubernetes names, keys and timestamps, the same as bytes). Not
// localeCompare: a locale's collation differs between machines and ignores punctuation, and
// using it loads ICU's collator into the process (2.6 MB of the controller's memory).
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
