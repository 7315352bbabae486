"""The patient unit (issue 14): phantom subjects with several slices, NIfTI volumes as patients, and the runner's
patient batches for patient-level adapters (same numbers whatever the batch size; no sample lost or duplicated;
resume)."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch

from benchmarks.schedule import batches_of, patient_batches, run_batches
from tests.helpers import bench
from inverse_problems.data.phantoms.datasets import BrainT1, BrainT2, KneePD

torch.set_num_threads(1)
PROBE = '''
"""A patient-level test adapter: records the patients of every batch it prepares."""
from adaptation.base import Adapter

SEEN = []


class PatientProbe(Adapter):
    """Test adapter: patient-level, changes nothing."""

    patient_level = True

    def prepare(self, y, operator, prior):
        SEEN.append(int(y.shape[0]))
        return operator, prior
'''


@pytest.fixture(scope="module")
def probe_plugin(tmp_path_factory):
    root = tmp_path_factory.mktemp("patient_probe")
    (root / "medtta_patient_probe.py").write_text(PROBE)
    dist = root / "medtta_patient_probe-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: medtta-patient-probe\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""\
        [medtta_bench.adapters]
        patient-probe = medtta_patient_probe:PatientProbe
        """))
    (dist / "RECORD").write_text("")
    return root


def test_phantom_subjects_have_slices_of_one_anatomy():
    ds = BrainT2(size=32, length=6, slices=3)
    items = [ds[i] for i in range(6)]
    assert [it["patient"] for it in items] == ["brain-test-00000"] * 3 + ["brain-test-00001"] * 3
    assert [it["slice"] for it in items] == [0, 1, 2, 0, 1, 2]
    assert len({it["id"] for it in items}) == 6 and all(ds.patient_of(i) == it["patient"] for i, it in enumerate(items))
    # one slice per subject: the items of earlier versions, without patient keys
    single = BrainT2(size=32, length=2)
    assert "patient" not in single[0] and single[0]["id"] == "brain-t2-test-00000"
    # slices of a subject are closer to each other than to another subject's, and all differ
    d = lambda a, b: float((a["image"] - b["image"]).abs().mean())  # noqa: E731
    assert 0 < d(items[0], items[1]) < d(items[0], items[3]) and d(items[1], items[2]) > 0
    # the same subject in another contrast: same patient, same anatomy (labels), other signal
    t1 = BrainT1(size=32, length=6, slices=3)[1]
    assert t1["patient"] == items[1]["patient"] and not torch.equal(t1["image"], items[1]["image"])
    assert KneePD(size=32, length=4, slices=2)[3]["patient"] == "knee-test-00001"
    with pytest.raises(ValueError, match="slices"):
        BrainT2(slices=0)
    with pytest.raises(ValueError, match="slab"):
        BrainT2(slices=2, slab=1.5)


def test_patient_batches_partition_the_indices():
    class Probe:
        patient_level = True

    ds = BrainT2(size=16, length=10, slices=4)
    assert patient_batches(ds, 10) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert run_batches(ds, [Probe()], 10, 3) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert run_batches(ds, [], 10, 3) == batches_of(10, 3)
    with pytest.warns(UserWarning, match="cuts the last patient"):
        run_batches(ds, [Probe()], 6, 3)

    class Interleaved:  # items of two patients interleaved, no patient_of: read from the items
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return {"id": f"x{i}", "patient": "ab"[i % 2]}

    assert patient_batches(Interleaved(), 5) == [[0, 2, 4], [1, 3]]


def test_nifti_volumes_are_patients(tmp_path):
    nib = pytest.importorskip("nibabel")
    from inverse_problems.data.readers.nifti import NiftiDataset

    for name in ("a", "b"):
        vol = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32) + 0.1
        nib.save(nib.Nifti1Image(vol, np.eye(4)), str(tmp_path / f"{name}.nii.gz"))
    ds = NiftiDataset(root=str(tmp_path), size=16, slices="all", split="test")
    assert [ds[i]["patient"] for i in range(len(ds))] == ["a"] * 3 + ["b"] * 3
    assert [ds.patient_of(i) for i in range(len(ds))] == ["a"] * 3 + ["b"] * 3
    assert patient_batches(ds, 6) == [[0, 1, 2], [3, 4, 5]]


RUN = ["--problem", "cs_mri", "--algo", "zero-filled+patient-probe", "--dataset", "phantom-brain-t2", "--n", "7",
       "problem.size=16", "dataset.size=16", "problem.coils=2", "problem.coil_maps=true", "dataset.slices=3",
       "--quiet"]


def rows(out):
    return sorted((json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()), key=lambda r: r["index"])


def test_patient_runs_same_bits_whatever_the_batch_size_and_resume(tmp_path, probe_plugin):
    import sys

    with pytest.warns(UserWarning, match="cuts the last patient"):
        bench("run", *RUN, "--batch-size", "2", "--out", str(tmp_path / "b2"), plugin=probe_plugin)
    seen = list(sys.modules["medtta_patient_probe"].SEEN)
    assert seen == [3, 3, 1]  # patients of 3 slices, the last cut by --n 7
    a = rows(tmp_path / "b2")
    assert [r["index"] for r in a] == list(range(7)) and [r["batch_size"] for r in a] == [3] * 6 + [1]
    assert [r["patient"] for r in a] == ["brain-test-00000"] * 3 + ["brain-test-00001"] * 3 + ["brain-test-00002"]
    bench("run", *RUN, "--batch-size", "5", "--out", str(tmp_path / "b5"), plugin=probe_plugin)
    b = rows(tmp_path / "b5")
    for key in ("psnr", "ssim", "nmse", "data_misfit", "scale"):
        assert [r[key] for r in a] == [r[key] for r in b], key
    # a run killed inside a patient: the torn patient is rerun whole, its missing lines written once
    lines = (tmp_path / "b5" / "samples.jsonl").read_text().splitlines()
    (tmp_path / "b5" / "samples.jsonl").write_text("\n".join(lines[:4]) + "\n")
    bench("run", *RUN, "--batch-size", "5", "--out", str(tmp_path / "b5"), "--resume", plugin=probe_plugin)
    c = rows(tmp_path / "b5")
    assert [r["index"] for r in c] == list(range(7))
    assert [r["psnr"] for r in c] == [r["psnr"] for r in b]
