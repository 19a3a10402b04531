"""Experiments that train the package's networks and record the results.

Each experiment is a module run as `python -m keras_resnet.experiments.NAME`.
"""
