"""Record training dynamics from a PyTorch Lightning fit and rank the samples: the README example.

    pip install '.[lightning]'                 # the package and Lightning (or PYTHONPATH=<checkout>)
    python examples/lightning_digits.py        # writes ./lightning_run; seconds on a laptop CPU

The data and model of own_loop.py (an MLP on scikit-learn's digits, 20% of the labels replaced at
random, 3% more changed on purpose by seed_flips), trained by Lightning. The training code changes in
three places only: the dataset is
wrapped in IndexedDataset, training_step also returns the logits, and the Trainer gets the
callback. The folder it writes is a run folder: `./run.sh compare lightning_run` compares methods.
"""
import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from mislabel import rank, seed_flips
from mislabel.integrations.lightning import DynamicsCallback, IndexedDataset

digits = load_digits()
images = torch.tensor(digits.images, dtype=torch.float32).flatten(1) / 16
true_labels = torch.tensor(digits.target)
torch.manual_seed(0)
noisy = torch.rand(len(true_labels)) < 0.2                       # replace 20% of the labels at random
labels = torch.where(noisy, torch.randint(0, 10, true_labels.shape), true_labels)
seeds = seed_flips(labels.numpy(), rate=0.03, features=images.numpy())  # 3% changed on purpose: the run checks itself


class Classifier(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))

    def training_step(self, batch, batch_idx):
        inputs, targets, _ = batch                                   # IndexedDataset appends the indices
        logits = self.net(inputs)
        return {"loss": F.cross_entropy(logits, targets), "logits": logits}   # the callback reads "logits"

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


train_set = TensorDataset(images, torch.from_numpy(seeds.labels))  # trained on the seeded labels
loader = DataLoader(IndexedDataset(train_set), batch_size=64, shuffle=True)
folder = "lightning_run"                                         # a run folder, in the current directory
dynamics = DynamicsCallback(len(train_set), num_classes=10, out=folder,
                            true_labels=true_labels)             # true labels: only when you know them
trainer = pl.Trainer(max_epochs=40, callbacks=[dynamics], logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False)
trainer.fit(Classifier(), loader)                                # saves the folder when training ends
table = rank(folder, seeded=seeds)                               # the shipped detector, AUM, confidence
print(table[~table["seeded"]].head(10).to_string(index=False))
print({name: round(m["auc"], 4) for name, m in table.attrs["metrics"].items()})
print(f"seeds found among the flagged: {table.attrs['seeded']['recall']:.0%}")
