"""Data debugging (the seed's Chapter 4.3): DivideMix co-training, with labels repaired by the detector.

``dividemix.py`` is the algorithm, ``train.py`` its command line (data, noise, repair, outputs),
``repair.py`` builds repair files, and ``Train_cub.py`` / ``Train_webvision.py`` are presets.
"""
