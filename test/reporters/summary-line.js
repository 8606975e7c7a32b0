// Prints one closing line, "N passed, N failed, N skipped", that CI reads. A test file that fails
// before any test runs (syntax error, failed beforeAll import) counts as a failure: Jest's own
// numFailedTests would leave it out and a broken file would pass unnoticed.
export default class SummaryLineReporter {
  onRunComplete(_contexts, results) {
    const brokenFiles = results.testResults.filter(
      (file) => file.testExecError != null || (file.failureMessage && file.numFailingTests === 0),
    ).length;
    const failed = results.numFailedTests + brokenFiles;
    process.stdout.write(
      `\n${results.numPassedTests} passed, ${failed} failed, ${results.numPendingTests + results.numTodoTests} skipped\n`,
    );
  }
}
