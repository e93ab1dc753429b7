"""The CIFAR-10 reference numbers (not ours), read from the table of docs/method.md, the one
place they are typed: {arch: {bit: (the paper, the authors' README, an independent rerun of the
authors' code)}}, each number as the text there gives it."""
from pathlib import Path

METHOD = Path(__file__).resolve().parents[1] / "docs" / "method.md"
NETWORKS = {"ResNet-20": "res20", "ResNet-56": "res56"}
SOURCES = ("paper", "authors' README", "an independent rerun of the authors' code")
COLUMNS = (32, 4, 3, 2)  # the table's FP32, 4-bit, 3-bit and 2-bit columns


def cifar10_references(path=METHOD):
    found = {}
    for line in Path(path).read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 + len(COLUMNS) and cells[0] in NETWORKS and cells[1] in SOURCES:
            found[NETWORKS[cells[0]], cells[1]] = cells[2:]
    refs = {}
    for network, arch in NETWORKS.items():
        missing = [s for s in SOURCES if (arch, s) not in found]
        if missing:
            raise SystemExit(f"error: {path} has no {network} row for {', '.join(missing)}")
        refs[arch] = {bit: tuple(found[arch, s][i] for s in SOURCES)
                      for i, bit in enumerate(COLUMNS)}
    return refs
