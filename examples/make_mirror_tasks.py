"""Writes examples/mirror-tasks.jsonl, the tiny file docs/own-tasks.md starts from.

The task: mirror a small coloured grid left to right. Each group is one base grid; its puzzle
has two examples (the grid, and the grid with colours 1 and 2 swapped). Run it again to get the
same bytes: python examples/make_mirror_tasks.py
"""
import json
import random
from pathlib import Path


def main() -> None:
    rng = random.Random(0)
    lines = []
    for i in range(60):
        h, w = rng.randint(2, 5), rng.randint(2, 5)
        grid = [[rng.randint(0, 3) for _ in range(w)] for _ in range(h)]
        swapped = [[{1: 2, 2: 1}.get(v, v) for v in row] for row in grid]
        split = "test" if i % 5 == 4 else "train"
        for g in (grid, swapped):
            lines.append(json.dumps({"split": split, "group": f"grid{i:03d}", "puzzle": f"grid{i:03d}",
                                     "input": g, "output": [row[::-1] for row in g]}))
    Path(__file__).with_name("mirror-tasks.jsonl").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
