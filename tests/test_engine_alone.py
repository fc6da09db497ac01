"""The engine is the torch-free product: it imports nothing from torch, condnet.nn or condnet.train."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import torch

from condnet import gates
from condnet.config import Config, ModelConfig, validate
from condnet.engine import kernels
from condnet.nn.checkpoint import save_checkpoint
from condnet.nn.condnet import CondNet

BLOCKER = """
import importlib.abc, sys
FORBIDDEN = ("condnet.nn", "condnet.train")
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch" or name.startswith(FORBIDDEN):
            raise ImportError(f"the engine imported {name}")
sys.meta_path.insert(0, Refuse())
"""


def test_the_engine_runs_a_checkpoint_with_torch_unimportable(tmp_path):
    torch.manual_seed(0)
    for router in gates.routers():
        cfg = validate(Config(model=ModelConfig(widths=[16, 8], block_size=[4, 2], router=router, k=[2])))
        model = CondNet(6, 3, cfg.model).eval()
        save_checkpoint(model, tmp_path / router)
        x = np.random.default_rng(1).random((5, 6), dtype=np.float32)
        with torch.no_grad():
            np.save(tmp_path / f"{router}.npy", model(torch.from_numpy(x), mode="threshold").logits.numpy())
    np.save(tmp_path / "x.npy", x)
    script = BLOCKER + textwrap.dedent(f"""
        import numpy as np
        from condnet.engine import Engine
        x = np.load({str(tmp_path / "x.npy")!r})
        for router in {gates.routers()!r}:
            engine = Engine.from_run({str(tmp_path)!r} + "/" + router)
            expected = np.load({str(tmp_path)!r} + f"/{{router}}.npy")
            np.testing.assert_allclose(engine.forward(x)[0], expected, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(engine.forward(x[:1])[0], expected[:1], rtol=1e-5, atol=1e-6)
        assert not [m for m in sys.modules if m.split(".")[0] == "torch" or m.startswith(FORBIDDEN)]
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_the_meta_columns_are_distinct_and_all_counted():
    columns = {name: value for name, value in vars(kernels).items() if name.startswith("M_")}
    assert sorted(columns.values()) == list(range(kernels.META_COLUMNS)), columns
    assert sorted(kernels.DECISIONS.values()) == list(range(len(kernels.DECISIONS)))
