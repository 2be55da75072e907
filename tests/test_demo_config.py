"""`make demo`'s pieces agree: the Makefile's build options are valid city-logistics options
(the ones benchmarks/learn_city.py reproduces), and configs/demo-city.yaml is a valid hrm-train
config that follows the 10:1 epochs-to-evaluations rule."""
import sys
from pathlib import Path

from hrm_builders.city_logistics import CityLogistics
from hrm_model.config import load_file, resolve

ROOT = Path(__file__).resolve().parent.parent


def test_demo_build_options_and_config_are_valid():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import learn_city
    opts = learn_city.demo_build_options()
    kv = {a[2:].replace("-", "_"): b for a, b in zip(opts[::2], opts[1::2])}
    kv = {k: v if k == "vehicles" else int(v) for k, v in kv.items()}
    assert kv["size"] * kv["size"] == CityLogistics().info(kv).seq_len and kv["min_distance"] > kv["size"] // 2
    assert set(kv["vehicles"].split(",")) <= set(CityLogistics().defaults()["vehicles"].split(","))
    cfg, _ = resolve(load_file(learn_city.CONFIG), {}, gpu_available=False)
    assert cfg["epochs"] == 10 * cfg["eval_interval"] and cfg["arch"]["halt_max_steps"] == 1
    # the README's step count is the one the config and the build give
    per_iteration = kv["train_scenarios"] * cfg["eval_interval"] // cfg["global_batch_size"]   # HRM's sampler
    steps = per_iteration * (cfg["epochs"] // cfg["eval_interval"])
    assert f"{steps:,} steps" in (ROOT / "README.md").read_text()
