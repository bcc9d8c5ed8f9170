"""Stage 6, output: generated datasets on disk, format ``mmmi-dataset/1``.

A dataset is a directory: ``manifest.json`` plus one ``.npy`` per variable per shard
(``shard-00000/x.npy``, first axis = sample), loadable with numpy alone. Shards are
streamed batch by batch, hashed as written, fsynced and renamed into place, and the
manifest is rewritten atomically after each one, so a killed run resumes where it
stopped and ends byte-identical to an uninterrupted run. Jobs of a split write
disjoint shards into part manifests that :func:`merge` joins. ``docs/dataset-format.md``
is the reference.

Modules: :mod:`~mmmi_dsl.dataset.format` (names, the manifest's schema, reading),
:mod:`~mmmi_dsl.dataset.writer`, :mod:`~mmmi_dsl.dataset.jobs` (job splits),
:mod:`~mmmi_dsl.dataset.merge`, :mod:`~mmmi_dsl.dataset.verify`,
:mod:`~mmmi_dsl.dataset.stats`, :mod:`~mmmi_dsl.dataset.generate` (from a model, torch)
and :mod:`~mmmi_dsl.dataset.preview`.
"""

from __future__ import annotations

from mmmi_dsl.dataset.format import (
                                     FORMAT,
                                     IDENTITY,
                                     MANIFEST,
                                     REQUIRED_METADATA,
                                     RESERVED,
                                     SHARD_KEYS,
                                     DatasetError,
                                     Manifest,
                                     MIEntry,
                                     ShardEntry,
                                     VariableSpec,
                                     file_stems,
                                     load_arrays,
                                     manifest_name,
                                     read_manifest,
                                     shard_count,
)
from mmmi_dsl.dataset.jobs import check_split, parse_split, shard_from_env, split_from_env
from mmmi_dsl.dataset.merge import merge
from mmmi_dsl.dataset.stats import MI_BATCHES, READ_ROWS, gaussian_mi, plain_pair, plugin_bias
from mmmi_dsl.dataset.verify import (
                                     MAX_LINES,
                                     MAX_PLUGIN_DIM,
                                     MI_SIGMAS,
                                     MIN_ROWS_PER_DIM,
                                     Finding,
                                     MICheck,
                                     VerifyReport,
                                     verify,
)
from mmmi_dsl.dataset.writer import ChunkSampler, run_to_resume, write_dataset

__all__ = [
    "FORMAT", "IDENTITY", "MANIFEST", "REQUIRED_METADATA", "RESERVED", "SHARD_KEYS", "MI_BATCHES", "READ_ROWS",
    "MAX_LINES", "MAX_PLUGIN_DIM", "MI_SIGMAS", "MIN_ROWS_PER_DIM",
    "DatasetError", "Manifest", "MIEntry", "ShardEntry", "VariableSpec", "ChunkSampler", "Finding", "MICheck",
    "VerifyReport",
    "file_stems", "load_arrays", "manifest_name", "read_manifest", "shard_count", "check_split", "parse_split",
    "shard_from_env", "split_from_env", "merge", "gaussian_mi", "plain_pair", "plugin_bias", "verify",
    "run_to_resume", "write_dataset",
]
