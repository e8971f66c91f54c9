"""Record training dynamics from a Hugging Face Trainer and rank the samples: the README example.

    pip install '.[transformers]'              # the package, transformers and accelerate
    python examples/transformers_tiny.py       # writes ./transformers_run; under a minute on a CPU

Runs offline: a small BERT initialised at random learns a toy task (the class of a sequence is the
keyword token in it) on which 20% of the labels were replaced at random. With a real model, build
the model and rows as usual instead, e.g.

    tokenizer = AutoTokenizer.from_pretrained(name)
    model = AutoModelForSequenceClassification.from_pretrained(name, num_labels=num_labels)
    rows = dataset.map(lambda batch: tokenizer(batch["text"], truncation=True), batched=True)

and keep the three changes this example makes to a plain Trainer script: IndexedDataset around
the training set, DynamicsTrainer in place of Trainer, and the DynamicsCallback.
"""
import torch
from transformers import BertConfig, BertForSequenceClassification, TrainingArguments

from mislabel import rank, seed_flips
from mislabel.integrations.transformers import DynamicsCallback, DynamicsTrainer, IndexedDataset

CLASSES, SAMPLES, LENGTH, VOCAB = 3, 600, 12, 100
torch.manual_seed(0)
true_labels = torch.randint(0, CLASSES, (SAMPLES,))
tokens = torch.randint(CLASSES + 1, VOCAB, (SAMPLES, LENGTH))    # filler tokens
tokens[torch.arange(SAMPLES), torch.randint(0, LENGTH, (SAMPLES,))] = true_labels + 1   # the keyword
noisy = torch.rand(SAMPLES) < 0.2                                # replace 20% of the labels at random
labels = torch.where(noisy, torch.randint(0, CLASSES, (SAMPLES,)), true_labels)
seeds = seed_flips(labels.numpy(), rate=0.03)                    # 3% changed on purpose: the run checks itself
rows = [{"input_ids": tokens[i], "attention_mask": torch.ones(LENGTH, dtype=torch.int64),
         "labels": int(seeds.labels[i])} for i in range(SAMPLES)]   # trained on the seeded labels

model = BertForSequenceClassification(BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                                                 num_attention_heads=4, intermediate_size=64,
                                                 max_position_embeddings=LENGTH, num_labels=CLASSES))
folder = "transformers_run"                                      # a run folder, in the current directory
args = TrainingArguments(output_dir="transformers_trainer", num_train_epochs=15, per_device_train_batch_size=32,
                         learning_rate=1e-3, save_strategy="no", report_to="none", disable_tqdm=True, seed=0)
trainer = DynamicsTrainer(model=model, args=args, train_dataset=IndexedDataset(rows),
                          callbacks=[DynamicsCallback(SAMPLES, CLASSES, out=folder, true_labels=true_labels)])
trainer.train()                                                  # saves the folder when training ends
table = rank(folder, seeded=seeds)                               # the shipped detector, AUM, confidence
print(table[~table["seeded"]].head(10).to_string(index=False))
print({name: round(m["auc"], 4) for name, m in table.attrs["metrics"].items()})
print(f"seeds found among the flagged: {table.attrs['seeded']['recall']:.0%}")
