"""Record training dynamics from your own loop and rank the samples: the README example.

    python examples/own_loop.py      # writes ./own_loop_run; seconds on a laptop CPU

``mislabel`` must be importable: in a checkout, ``.venv/bin/python examples/own_loop.py`` once
``./run.sh`` has set up ``.venv`` (it installs the package there in editable mode); anywhere else
after ``pip install .``.

A small MLP on scikit-learn's digits with 20% of the labels replaced at random. The folder it
writes is a run folder like generate_td's: train a detector on it with
`./run.sh train_detector --r 0.2 --dataset digits --files_path own_loop_run`, or compare methods
with `./run.sh compare own_loop_run`.
"""
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from mislabel import Recorder, rank, seed_flips

digits = load_digits()
images = torch.tensor(digits.images, dtype=torch.float32).flatten(1) / 16
true_labels = torch.tensor(digits.target)
torch.manual_seed(0)
noisy = torch.rand(len(true_labels)) < 0.2                       # replace 20% of the labels at random
labels = torch.where(noisy, torch.randint(0, 10, true_labels.shape), true_labels)
seeds = seed_flips(labels.numpy(), rate=0.03, features=images.numpy())  # 3% changed on purpose: the run checks itself
train_labels = torch.from_numpy(seeds.labels)                    # train on these; report your own `labels`

model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
epochs = 40
recorder = Recorder(len(labels), num_classes=10, num_epochs=epochs)
for epoch in range(epochs):
    for rows in torch.randperm(len(labels)).split(64):
        logits = model(images[rows])
        loss = F.cross_entropy(logits, train_labels[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        recorder.update(logits, train_labels[rows], rows)        # one call per batch
    recorder.next_epoch()                                        # one call per epoch
folder = "own_loop_run"                                          # a run folder, in the current directory
recorder.save(folder, true_labels=true_labels)                   # true labels: only when you know them
table = rank(folder, seeded=seeds)                               # the shipped detector, AUM, confidence
print(table[~table["seeded"]].head(10).to_string(index=False))
print({name: round(m["auc"], 4) for name, m in table.attrs["metrics"].items()})
print(f"seeds found among the flagged: {table.attrs['seeded']['recall']:.0%}")
