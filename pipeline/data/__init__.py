"""Data: sources (digits, CSVs, image folders) to split arrays and ``tf.data`` pipelines,
decoding, augmentation.

Takes plain values, knows nothing of Hydra or MLflow. May use: config (errors).
"""
