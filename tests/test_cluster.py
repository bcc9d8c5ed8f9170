"""docs/cluster.md: the SLURM array, HTCondor and torchrun recipes, run through their environment
variables, each job into its own directory ("different machines"); the parts merged and verified."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from mmmi_dsl.dataset import shard_from_env
from mmmi_dsl.errors import UsageError

from .conftest import ROOT

PAGE = (ROOT / "docs" / "cluster.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```sh\n(.*?)```", PAGE, flags=re.S)
SMALL = ["-n", "2000", "--set", "d=4", "--shard-size", "256", "--chunk-size", "256"]
SCHEDULER_VARS = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_STEP",
                  "_CONDOR_PROCNO", "_CONDOR_NPROCS", "RANK", "WORLD_SIZE")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for v in SCHEDULER_VARS:
        monkeypatch.delenv(v, raising=False)


def block(word: str) -> str:
    return next(b for b in BLOCKS if word in b)


def mmmic_argv(line: str, env: dict[str, str]) -> list[str]:
    """The mmmic arguments of a recipe's command line, with $VAR / $(Macro) expanded as the scheduler would."""
    line = re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], line)
    line = re.sub(r"\$(\w+)", lambda m: env[m[1]], line)
    words = shlex.split(line)
    start = words.index("generate")
    words = words[start:]
    return [w if w != "specs/two_views.mmi" else str(ROOT / "specs/two_views.mmi") for w in words]


def small(argv: list[str], out) -> list[str]:
    """The recipe's command at a test's size, writing under ``out``."""
    argv = list(argv)
    i = argv.index("-o")
    argv[i + 1] = str(out / argv[i + 1])
    j = argv.index("-n")
    del argv[j:j + 2]
    return argv + SMALL


def run_jobs(mmmic, monkeypatch, tmp_path, jobs: list[tuple[dict, list[str]]]):
    for env, argv in jobs:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        r = mmmic(*small(argv, tmp_path))
        assert r.code == 0, r.stderr
        for k in env:
            monkeypatch.delenv(k)


def merged_equals_one_job(mmmic, tmp_path, parts: list[str]):
    r = mmmic("merge", *[tmp_path / p for p in parts], "-o", tmp_path / "all")
    assert r.code == 0 and "complete" in r.stdout, r.output
    assert mmmic("verify", tmp_path / "all").code == 0
    assert mmmic("generate", ROOT / "specs/two_views.mmi", "-o", tmp_path / "one", "--no-progress", *SMALL).code == 0

    def digests(d):
        m = json.loads((d / "manifest.json").read_text())
        return {(s["index"], v): h for s in m["shards"] for v, h in s["sha256"].items()}
    assert digests(tmp_path / "all") == digests(tmp_path / "one")  # 8 shards, byte-identical
    assert (tmp_path / "all" / "croissant.json").is_file()


def test_slurm_array_recipe(mmmic, monkeypatch, tmp_path):
    text = block("#SBATCH")
    lo, hi = map(int, re.search(r"#SBATCH --array=(\d+)-(\d+)", text).groups())
    line = next(l for l in text.splitlines() if l.startswith("mmmic generate"))
    count = hi - lo + 1
    jobs = []
    for task in range(lo, hi + 1):
        env = {"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_COUNT": str(count),
               "SLURM_ARRAY_TASK_MIN": str(lo), "SLURM_ARRAY_TASK_STEP": "1"}
        jobs.append((env, mmmic_argv(line, env)))
    run_jobs(mmmic, monkeypatch, tmp_path, jobs)
    for task in range(count):
        assert (tmp_path / f"out/tv/job-{task}/manifest.part-{task}-of-{count}.json").is_file()
    merged_equals_one_job(mmmic, tmp_path, [f"out/tv/job-{t}" for t in range(count)])


def test_htcondor_recipe(mmmic, monkeypatch, tmp_path):
    text = block("queue")
    macros = dict(re.findall(r"^(\w+)\s*=\s*(.*?)\s*$", text, flags=re.M))
    n = int(macros["N"])
    assert re.search(r"^queue \$\(N\)$", text, flags=re.M)
    jobs = []
    for process in range(n):
        values = {"Process": str(process), "N": str(n)}
        env = dict(w.split("=", 1) for w in shlex.split(re.sub(r"\$\((\w+)\)", lambda m: values[m[1]],
                                                               macros["environment"]))[0].split())
        assert env == {"_CONDOR_PROCNO": str(process), "_CONDOR_NPROCS": str(n)}
        jobs.append((env, mmmic_argv(macros["arguments"], values)))
    run_jobs(mmmic, monkeypatch, tmp_path, jobs)
    merged_equals_one_job(mmmic, tmp_path, [f"out/tv/job-{p}" for p in range(n)])


def test_torchrun_recipe(mmmic, monkeypatch, tmp_path):
    line = block("torchrun").strip()
    world = int(re.search(r"--nproc-per-node=(\d+)", line)[1])
    argv = mmmic_argv(line, {})
    jobs = [({"RANK": str(r), "WORLD_SIZE": str(world), "LOCAL_RANK": str(r)}, argv) for r in range(world)]
    run_jobs(mmmic, monkeypatch, tmp_path, jobs)
    shared = tmp_path / "out/tv/shared"
    assert sorted(p.name for p in shared.glob("manifest.part-*")) == [f"manifest.part-{r}-of-{world}.json"
                                                                     for r in range(world)]
    merged_equals_one_job(mmmic, tmp_path, ["out/tv/shared"])


@pytest.mark.parametrize("env, split", [
    ({"_CONDOR_PROCNO": "2", "_CONDOR_NPROCS": "5"}, (2, 5)),
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "_CONDOR_PROCNO": "0", "_CONDOR_NPROCS": "2"},
     (3, 4)),  # SLURM wins
    ({"_CONDOR_PROCNO": "1", "_CONDOR_NPROCS": "2", "RANK": "0", "WORLD_SIZE": "8"}, (1, 2)),  # over torchrun
])
def test_the_order_of_the_sources(monkeypatch, env, split):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert shard_from_env(None) == split
    assert shard_from_env("0/3") == (0, 3)  # --shard wins over everything


@pytest.mark.parametrize("env, message", [
    ({"_CONDOR_PROCNO": "x", "_CONDOR_NPROCS": "2"}, "_CONDOR_PROCNO='x' is not an integer"),
    ({"_CONDOR_PROCNO": "1"}, "_CONDOR_NPROCS is not set"),
    ({"_CONDOR_PROCNO": "4", "_CONDOR_NPROCS": "4"}, "job 4 of 4 is not a split"),
])
def test_bad_htcondor_values_are_usage_errors(monkeypatch, env, message, mmmic, tmp_path):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(UsageError, match=re.escape(message)):
        shard_from_env(None)
    r = mmmic("generate", ROOT / "specs/two_views.mmi", "-o", tmp_path / "x", "-n", "10", "--set", "d=2")
    assert r.code == 2 and message in r.stderr and "--shard I/K" in r.stderr
