"""Parse time of the DAG files, as Airflow measures it, against Airflow's own example DAGs (issue 6).

    .venv/bin/python bench/dag_parse.py [--repeat 5]

Two measurements, each for ``dags/`` and, in the same run, for the baseline: the example DAGs
shipped in the installed Airflow (``airflow/example_dags``, the files that parse without extra
packages).

1. *In-process* (what ``airflow dags report`` shows): ``DagBag(dag_folder=...)`` and each file's
   ``dagbag_stats`` duration. A trivial TaskFlow DAG is parsed first so that neither folder pays
   for Airflow's own first imports. ``first`` is the first parse of our folder (it includes
   importing ``w365.orchestration.airflow_support``, once); ``median`` is over ``--repeat`` parses.
2. *Per-file process* (what the dag-processor does): for each file a fresh fork of a process with
   Airflow loaded, which pre-imports the file's ``airflow.*`` imports (``[dag_processor]
   parsing_pre_import_modules``) and parses that one file; the file's ``dagbag_stats`` duration,
   median of ``--repeat`` forks.
   The parent is frozen for the garbage collector first (``gc.freeze()``), as the dag-processor
   does before it forks. Everything the file imports that Airflow did not pre-import is paid here,
   every time: for a
   TaskFlow file that includes Airflow's own lazy ``@task`` machinery (the standard provider), so
   the fair baseline there is Airflow's TaskFlow tutorial, ``tutorial_taskflow_api.py``.

Both use byte-code caches (``__pycache__``, git-ignored), as a deployment does; the script
compiles ``dags/`` and ``include/w365`` first even under PYTHONDONTWRITEBYTECODE.

Aim (issue 6): every file under 50 ms and the whole folder under 0.5 s (in-process).
The script uses a throw-away AIRFLOW_HOME; it touches nothing else.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import gc
import importlib
import os
import shutil
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

from _common import final_json  # bench/ is the script's folder, first on sys.path

REPO = Path(__file__).resolve().parents[1]
DAGS = REPO / "dags"
HOME = tempfile.mkdtemp(prefix="w365-bench-airflow-")
os.environ.update({
    "AIRFLOW_HOME": HOME,
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{HOME}/airflow.db",
    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
})
os.environ.setdefault("AIRFLOW__W365__TIMEZONE", "America/Los_Angeles")

TRIVIAL = textwrap.dedent('''
    import pendulum
    from airflow.sdk import dag, task

    @dag(schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False)
    def warm_up():
        @task
        def hello():
            return 1
        hello()

    warm_up()
''')

AIM_FILE_MS = 50.0
AIM_FOLDER_MS = 500.0


def in_process(folder: Path | str) -> dict[str, float]:
    """Milliseconds per file, as DagBag (and `airflow dags report`) measures them."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(folder))
    return {Path(s.file).name: s.duration.total_seconds() * 1000 for s in bag.dagbag_stats if s.dag_num}


def per_file_process(files: list[Path], repeat: int) -> dict[str, float]:
    """Milliseconds per file (median of ``repeat``), each parse in a fresh fork the way the
    dag-processor does it."""
    runs = [_forked(files) for _ in range(repeat)]
    return {name: statistics.median(r[name] for r in runs) for name in runs[0]}


def _forked(files: list[Path]) -> dict[str, float]:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.file import iter_airflow_imports

    out: dict[str, float] = {}
    for f in files:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: pre-import the file's airflow modules, then parse it
            os.close(read)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)  # example DAGs that need absent packages log tracebacks
            for module in iter_airflow_imports(str(f)):
                try:
                    importlib.import_module(module)
                except Exception:  # noqa: BLE001 - the processor only warns, too
                    pass
            bag = DagBag(dag_folder=str(f))
            ms = sum(s.duration.total_seconds() for s in bag.dagbag_stats) * 1000 if bag.dags else -1.0
            os.write(write, f"{ms}".encode())
            os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        value = float(os.read(read, 100).decode() or -1)
        os.close(read)
        if value >= 0:
            out[f.name] = value
    return out


def summary(label: str, ms: dict[str, float]) -> str:
    values = list(ms.values())
    return (f"{label:<34} files {len(values):>3}  median {statistics.median(values):6.2f} ms  "
            f"max {max(values):7.2f} ms  total {sum(values):8.2f} ms  per file {sum(values) / len(values):6.2f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="parses of each folder / file; medians (default 5)")
    args = parser.parse_args()

    import airflow.dag_processing.manager  # noqa: F401 - what the dag-processor has loaded
    import airflow.dag_processing.processor  # noqa: F401
    import airflow.example_dags

    examples = Path(airflow.example_dags.__file__).parent
    our_files = sorted(DAGS.glob("*.py"))
    # Byte-code caches, as a deployment has them (Airflow's own modules and example DAGs come
    # compiled with the package; PYTHONDONTWRITEBYTECODE would make every parse compile ours).
    sys.dont_write_bytecode = False
    for folder in (DAGS, REPO / "include" / "w365"):
        compileall.compile_dir(str(folder), quiet=1)
    # First, before this process parses any DAG: forks start from the dag-processor's state,
    # including its gc.freeze() (without it, the first collection in a child walks, and so
    # copies, the whole inherited heap: +150 ms a file, for Airflow's examples as for ours).
    gc.freeze()
    ours_fork = per_file_process(our_files, args.repeat)
    base_fork = per_file_process(sorted(examples.glob("*.py")), args.repeat)

    warm = Path(HOME) / "warm"
    warm.mkdir()
    (warm / "warm_up.py").write_text(TRIVIAL)
    in_process(warm)
    ours_first = in_process(DAGS)
    ours_runs = [in_process(DAGS) for _ in range(args.repeat)]
    with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet), contextlib.redirect_stdout(quiet):
        base_runs = [in_process(examples) for _ in range(args.repeat)]
    ours = {f: statistics.median(r[f] for r in ours_runs) for f in ours_first}
    base = {f: statistics.median(r[f] for r in base_runs) for f in base_runs[0]}

    print(f"Airflow {airflow.__version__}, Python {sys.version.split()[0]}; {len(our_files)} files in dags/, "
          f"{len(base)} example DAG files as the baseline\n")
    print(f"{'file':<44} {'first':>8} {'median':>8} {'fork':>8}   (ms)")
    for name in sorted(ours, key=lambda n: -ours[n]):
        print(f"{name:<44} {ours_first[name]:8.2f} {ours[name]:8.2f} {ours_fork.get(name, float('nan')):8.2f}")
    print()
    print(summary("dags/ in-process (median)", ours))
    print(summary("dags/ in-process (first parse)", ours_first))
    print(summary("examples in-process (median)", base))
    print(summary("dags/ per-file process", ours_fork))
    print(summary("examples per-file process", base_fork))
    print()
    ratio = statistics.median(ours.values()) / statistics.median(base.values())
    ratio_fork = statistics.median(ours_fork.values()) / statistics.median(base_fork.values())
    tutorial = base_fork.get("tutorial_taskflow_api.py", float("nan"))
    print(f"{'TaskFlow tutorial per-file process':<34} tutorial_taskflow_api.py {tutorial:.2f} ms "
          f"(classic-operator tutorial.py {base_fork.get('tutorial.py', float('nan')):.2f} ms)")
    print()
    print(f"ratio dags/ : examples, median per file: in-process {ratio:.2f}x, per-file process {ratio_fork:.2f}x")
    print(f"ratio dags/ median : TaskFlow tutorial, per-file process: {statistics.median(ours_fork.values()) / tutorial:.2f}x "
          "(a fresh process pays Airflow's lazy TaskFlow imports: @task loads the standard provider)")
    worst_file = max(max(ours.values()), max(ours_first.values()))
    folder = sum(ours_first.values())
    ok = worst_file < AIM_FILE_MS and folder < AIM_FOLDER_MS
    print(f"aim: every file < {AIM_FILE_MS:.0f} ms (worst {worst_file:.2f} ms), folder < {AIM_FOLDER_MS:.0f} ms "
          f"(first parse {folder:.2f} ms): {'MET' if ok else 'NOT MET'}")
    final_json("dag_parse", files=len(our_files), median_ms=round(statistics.median(ours.values()), 2), worst_ms=round(worst_file, 2),
               folder_first_parse_ms=round(folder, 2), ratio_to_examples=round(ratio, 2), ratio_to_examples_per_file_process=round(ratio_fork, 2),
               aim_met=ok)
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        shutil.rmtree(HOME, ignore_errors=True)
