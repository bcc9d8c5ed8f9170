"""Issue 20's cheap wins keep datasets byte-identical: chunks copied straight into the batch (no
torch.cat), shards hashed on a background thread; and the ``--threads auto`` rule."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from mmmi_dsl import load
from mmmi_dsl.backend import Sampler
from mmmi_dsl.cli.data import _threads
from mmmi_dsl.dataset.jobs import auto_threads, machine_load

from ..conftest import ROOT

SPECS = ROOT / "specs"


def concatenated(s: Sampler, start: int, stop: int) -> dict[str, torch.Tensor]:
    """The batch as the sampler built it before: each chunk's slice, then torch.cat."""
    C = s.chunk_size
    parts = [{k: v[max(start - c * C, 0):min(stop - c * C, C)] for k, v in s._chunk(c).items()}
             for c in range(start // C, (stop - 1) // C + 1)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


@pytest.mark.parametrize("start,stop", [(0, 64), (5, 27), (16, 48), (3, 100), (31, 33)])
def test_a_batch_written_chunk_by_chunk_is_bit_identical_to_the_concatenated_chunks(start, stop):
    model = load(SPECS / "disentangled.mmi")  # targets, labels and several modalities
    s = Sampler(model, seed=7, chunk_size=16, save_latents=True)
    got, want = s.sample_tensors(start, stop), concatenated(s, start, stop)
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].is_contiguous()
        assert torch.equal(got[k], want[k]), k


def test_background_hashes_are_the_files_sha256_and_do_not_depend_on_the_batch_size(tmp_path, mmmic):
    spec = str(SPECS / "two_views.mmi")
    digests = []
    for batch in ("64", "1000"):
        out = tmp_path / f"b{batch}"
        assert mmmic("generate", spec, "-o", str(out), "-n", "3000", "--set", "d=8", "--chunk-size", "64",
                     "--batch-size", batch, "--shard-size", "1024", "--no-progress").code == 0
        manifest = json.loads((out / "manifest.json").read_text())
        for shard in manifest["shards"]:
            for var, rel in shard["files"].items():
                assert shard["sha256"][var] == hashlib.sha256((out / rel).read_bytes()).hexdigest()
        digests.append([s["sha256"] for s in manifest["shards"]])
    assert len(digests[0]) == 3 and digests[0] == digests[1]


@pytest.mark.parametrize("learned,cores,load,threads", [
    (True, 2, 0.0, 2), (True, 2, 0.5, 2), (True, 2, 0.6, 1), (True, 2, 3.7, 1),  # the project's machine
    (True, 16, 14.5, 2), (True, 16, 15.0, 1), (True, 1, 0.0, 1),
    (False, 2, 0.0, 1), (False, 16, 0.0, 1),  # Gaussian-only: one thread whatever the load
    (True, 2, float("inf"), 1),  # no load average: counted as busy
])
def test_threads_auto_rule(learned, cores, load, threads):
    assert auto_threads(learned, cores, load) == threads


def test_threads_auto_looks_for_learned_flows_in_the_spec(monkeypatch):
    monkeypatch.setattr("mmmi_dsl.dataset.jobs.machine_load", lambda: (2, 0.0))
    assert _threads("auto", load(SPECS / "digits_views.mmi")) == 2
    assert _threads("auto", load(SPECS / "two_views.mmi")) == 1
    assert _threads(3, load(SPECS / "two_views.mmi")) == 3



def test_machine_load_reads_this_machine():
    cores, avg = machine_load()
    assert cores >= 1 and avg >= 0


def test_threads_flag_takes_auto_and_refuses_other_words(tmp_path, mmmic):
    before = torch.get_num_threads()
    spec = str(SPECS / "two_views.mmi")
    ok = mmmic("generate", spec, "-o", str(tmp_path / "a"), "-n", "10", "--set", "d=4", "--threads", "auto",
               "--no-progress")
    torch.set_num_threads(before)
    assert ok.code == 0
    bad = mmmic("generate", spec, "-o", str(tmp_path / "b"), "-n", "10", "--threads", "many")
    assert bad.code == 2 and "expected a number of threads or auto, got 'many'" in bad.stderr
