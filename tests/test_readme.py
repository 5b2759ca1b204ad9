"""README's code examples run as written, and do what the text around them says."""
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_meta_learning_example_trains_the_learned_rates_and_adapts_a_new_task():
    blocks = [b for b in python_blocks() if "init_meta_params" in b]
    assert len(blocks) == 1, "README's meta-learning example is missing"
    torch.manual_seed(0)
    scope: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)
    rates = [n for n in scope["meta_params"] if n.startswith("inner_lr.")]
    assert rates and all(not torch.all(scope["meta_params"][n] == 0.05) for n in rates)   # Adam moved them
    assert set(scope["adapted"]) == set(scope["params"])
    assert any(not torch.equal(scope["adapted"][n], scope["params"][n]) for n in scope["params"])
    assert torch.isfinite(torch.tensor(scope["loss"]))
