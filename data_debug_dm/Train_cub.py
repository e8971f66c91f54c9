"""DivideMix on CUB-200-2011 with synthetic noise: the seed's ``./run.sh train_cub`` preset.

    ./run.sh train_cub --data_path DIR --r 0.2 --noise_mode sym --repair_ratio 0.05 --num_epochs 300 \
        --td_dir RUN_FOLDER --pretrained_path resnet50_imagenet.pth

Defaults (see PRESETS["cub"] in train.py): ResNet-50 at 224x224, lr 0.002, wd 1e-3, batch 32,
10 warm-up epochs, lambda_u from the paper's table for the noise level. Repaired labels are the
ground truth (the run's noise is synthetic). Every flag of ``train_dividemix`` is accepted.
"""
import sys

from data_debug_dm.train import main

if __name__ == "__main__":
    main(sys.argv[1:], preset="cub")
