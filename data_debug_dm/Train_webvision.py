"""DivideMix on WebVision50 (real-world noise): the seed's ``./run.sh train_webvision`` preset.

    ./run.sh train_webvision --data_path DIR --repair_ratio 0.05 --num_epochs 100 --td_dir RUN_FOLDER

Defaults (see PRESETS["webvision"] in train.py): the paper's WebVision setting (alpha 0.5,
lambda_u 0, 1 warm-up epoch, lr 0.01, 100 epochs) on a ResNet-50 at 224x224. No synthetic noise
is added; repaired labels are the phase-1 classifier's last-epoch predictions. Every flag of
``train_dividemix`` is accepted (``--dataset clothing100k`` for the other real-noise set).
"""
import sys

from data_debug_dm.train import main

if __name__ == "__main__":
    main(sys.argv[1:], preset="webvision")
