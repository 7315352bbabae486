"""What several test modules share (tests import helpers from here, never from one another):

- `cli`: REPO, `bench(...)` (the CLI run in-process, output captured);
- `registry`: the source tree's entry points and `assert_covered`, the completeness check of a battery;
- `toys`: PhaseMRI / PhaseProblem / phase_prior / sampling_mask, the HQS sampler, ListDataset (adaptation tests);
- `networks`: tiny stand-ins with the NetworkAlgorithm interface (TinyUNet, TinyVarNet, NetAlgorithm);
- `plugin`: the test plugin's code (on the plugin API's first import paths) and entry points;
- `runs`: `fake_run`, a run directory written by hand (leaderboard, site);
- `interp`: tiny uvi-lite networks and frame-interpolation instances (tiny_uvi, interp_instance);
- `checkpoints`: the EDM/ADM reference fixtures (fill_like_reference, load_golden) and a tiny ADM checkpoint.
"""
from tests.helpers.checkpoints import ADM_TINY_FLAGS, FIXTURES, fill_like_reference, load_golden, tiny_checkpoint
from tests.helpers.cli import REPO, bench
from tests.helpers.interp import interp_instance, sequences, tiny_uvi, tiny_uvi_algorithm
from tests.helpers.networks import ConvBlock, NetAlgorithm, TinyUNet, TinyVarNet
from tests.helpers.plugin import PLUGIN_CODE, PLUGIN_ENTRY_POINTS
from tests.helpers.registry import assert_covered, project_names, source_entry_points
from tests.helpers.runs import fake_run
from tests.helpers.toys import HQS, ListDataset, PhaseMRI, PhaseProblem, phase_prior, sampling_mask

__all__ = ["ADM_TINY_FLAGS", "FIXTURES", "fill_like_reference", "load_golden", "tiny_checkpoint", "REPO", "bench",
           "interp_instance", "sequences", "tiny_uvi", "tiny_uvi_algorithm", "ConvBlock", "NetAlgorithm", "TinyUNet", "TinyVarNet", "PLUGIN_CODE", "PLUGIN_ENTRY_POINTS",
           "assert_covered", "project_names", "source_entry_points", "fake_run", "HQS", "ListDataset", "PhaseMRI",
           "PhaseProblem", "phase_prior", "sampling_mask"]
