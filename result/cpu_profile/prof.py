import sys, torch
from torch.profiler import profile, ProfilerActivity
from CIFAR.bench import make_trainer, run_args
from CIFAR.data import Normalize
from CIFAR.main import train_step
bit = int(sys.argv[1])
dev = torch.device("cpu")
g = torch.Generator().manual_seed(0)
x = Normalize("cifar10", "cpu")(torch.randint(0, 256, (128, 3, 32, 32), dtype=torch.uint8, generator=g))
y = torch.randint(0, 10, (128,), generator=g)
tr = make_trainer(run_args("res20", bit), dev)
for _ in range(3): train_step(*tr, x, y)
with profile(activities=[ProfilerActivity.CPU]) as p:
    for _ in range(5): train_step(*tr, x, y)
print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=60))
