"""Models: the scratch CNN, pretrained backbones, their cached features, the accelerator and strategy.

Pure builders returning ``keras.Model``s from plain values. May use: data, config.
"""
